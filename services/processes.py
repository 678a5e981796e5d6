"""Starting imsync's own processes and learning the address each one bound."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

_LISTENING = re.compile(r"listening on (?:https?://)?(\S+)")
_STARTED = re.compile(r"imsync \w+ .*started")


class Child:
    """A started `imsync` subcommand, the address it reported, and its latest output lines."""

    def __init__(self, process: asyncio.subprocess.Process, address: str, ready_line: str = "") -> None:
        self.process = process
        self.address = address
        self.ready_line = ready_line
        self.output: deque[str] = deque(maxlen=1000)

    async def line_with(self, text: str, timeout: float = 10.0) -> str:
        """The first line it printed containing `text`, once it has (a second address a
        process announces after its first, say)."""
        async with asyncio.timeout(timeout):
            while (found := next((line for line in self.output if text in line), None)) is None:
                await asyncio.sleep(0.02)
        return found

    async def stop(self, timeout: float = 10.0) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(timeout):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start(
    args: Sequence[str],
    *,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    echo: bool = False,
    attempts: int = 1,
    module: str = "services.cli",
    python: Sequence[str] = (),
    merge_stderr: bool = False,
) -> Child:
    """Runs `imsync ARGS...` (or `python [PYTHON...] -m MODULE ARGS...`) and waits for its
    "listening on HOST:PORT" (or "started") line.

    With `attempts`, a process that exits before it listens (the address of one just
    stopped is not free yet) is started again, a quarter second later. With `merge_stderr`,
    its log lines (stderr) are kept in its output too."""
    command = [sys.executable, *python, "-m", module, *args]
    for _attempt in range(attempts - 1):
        try:
            return await _start(command, timeout, env, echo, merge_stderr)
        except RuntimeError:
            await asyncio.sleep(0.25)
    return await _start(command, timeout, env, echo, merge_stderr)


async def _start(
    command: Sequence[str], timeout: float, env: dict[str, str] | None, echo: bool, merge_stderr: bool
) -> Child:
    args = command[command.index("-m") + 2 :]
    stderr = asyncio.subprocess.STDOUT if merge_stderr else None
    process = await asyncio.create_subprocess_exec(
        *stopping_with_this_process(), *command, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env
    )
    assert process.stdout is not None
    before: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"imsync {' '.join(args)} exited with {await process.wait()}")
                found = _LISTENING.search(line) or _STARTED.search(line)
                if found:
                    break
                before.append(line.rstrip())
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    # Keep draining stdout so the child never blocks on a full pipe.
    child = Child(process, found.group(1) if found.groups() else "", line.strip())
    child.output.extend(before)
    _drains.add(asyncio.get_running_loop().create_task(_drain(process.stdout, child, echo)))
    return child


_drains: set[asyncio.Task[None]] = set()


async def _drain(stream: asyncio.StreamReader, child: Child, echo: bool) -> None:
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip()
        child.output.append(text)
        if echo:
            print(text, flush=True)


def stopping_with_this_process() -> list[str]:
    """What a child's command starts with so that Linux sends it SIGTERM when this process
    dies, however it died (a demo killed outright, a test run stopped so its teardown never
    ran): util-linux's setpriv asks for it and execs the command, on the same pid. Then the
    child stops as on SIGTERM instead of running on, orphaned, on its ports. Used for what
    start() starts and for local_redis's servers. From the main thread only: Linux sends it
    when the thread that started the child ends, which for the main thread is the
    process's end; elsewhere, or without setpriv, nothing ([])."""
    setpriv = shutil.which("setpriv")
    if (
        setpriv is None
        or not sys.platform.startswith("linux")
        or threading.current_thread() is not threading.main_thread()
    ):
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


def demo_command() -> list[str]:
    """`imsync demo` on ports of its own (a test's, a soak's), its address in its output."""
    return [
        sys.executable,
        "-m",
        "services.cli",
        "demo",
        "--master-listen",
        "127.0.0.1:0",
        "--gateway-listen",
        "127.0.0.1:0",
    ]


def child_of(parent: int, command: str) -> int | None:
    """The pid of `parent`'s child running `imsync COMMAND` (the demo's master, say, to kill
    it midway in a test or a soak); None when it has none now. Linux's /proc."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            if ppid == parent and b"services.cli" in args and command.encode() in args:
                return int(entry.name)
    return None
