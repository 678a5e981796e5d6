"""One master per data directory: an exclusive lock on `DIR/master.lock`, held while the
master runs, naming its holder (pid and address) for whoever finds it taken.

The lock is the kernel's (flock): it goes with the process, however the process ends, so a
crashed master never leaves a stale lock behind. Two masters on one journal would each
believe what it acknowledged is on disk: the second one must not start.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "master.lock"


class DataDirInUse(OSError):
    def __init__(self, directory: Path, holder: str) -> None:
        super().__init__(f"{directory} is in use by {holder or 'another process'}")
        self.directory = directory
        self.holder = holder


class DataDirLock:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None

    def acquire(self, address: str) -> None:
        """Takes the lock, or raises DataDirInUse naming who holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
            os.close(fd)
            raise DataDirInUse(self.directory, holder) from None
        self._fd = fd
        self.say(address)

    def say(self, address: str) -> None:
        """Writes who holds the lock: this process, listening on `address`."""
        if self._fd is not None:
            text = f"pid {os.getpid()}, listening on {address}\n".encode()
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
