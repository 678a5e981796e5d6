"""Files of credentials (worker tokens, API keys): TOML tables holding SHA-256 hashes,
read again whenever they change, so that tokens and keys are added, rotated and revoked
without a restart, and rewritten one table at a time."""

from __future__ import annotations

import hashlib
import logging
import os
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from services.master.model.errors import InvalidArgument, Unauthenticated

log = logging.getLogger(__name__)

T = TypeVar("T")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_hash(metadata: Sequence[tuple[str, str | bytes]], what: str) -> str:
    """The hash of a request's `authorization: Bearer <secret>`; Unauthenticated without one.

    Keys and tokens are kept by this hash, and looked up by it in a dict. A lookup's time
    may tell a caller how much of a stored hash the hash of what they sent matched; to use
    that they would have to choose secrets whose SHA-256 starts as they wish, which is a
    preimage search, so it tells them nothing about any secret."""
    found = [value for key, value in metadata if key == "authorization"]
    if len(found) > 1:
        raise InvalidArgument("given more than once: a request has one identity", field="authorization")
    header = found[0] if found else None
    if not isinstance(header, str) or not header.lower().startswith("bearer "):
        raise Unauthenticated(f"missing authorization: Bearer <{what}>")
    return token_hash(header[7:].strip())


def replace_table(path: Path, section: str, name: str, lines: Sequence[str]) -> bool:
    """Rewrites the file (atomically) without its `[section."name"]` table, and with `lines`
    (a new table) at the end; True when there was such a table before."""
    old = path.read_text().splitlines() if path.exists() else []
    kept: list[str] = []
    skipping = False
    for line in old:
        if line.strip().startswith("["):
            skipping = line.strip() in (f'[{section}."{name}"]', f"[{section}.{name}]")
        if not skipping:
            kept.append(line)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join([*kept, *lines]) + "\n")
    os.replace(tmp, path)
    return len(kept) != len(old)


class WatchedToml(Generic[T]):
    def __init__(self, path: Path, parse: Callable[[dict[str, Any]], T], empty: T, what: str) -> None:
        self.path = path
        self._parse = parse
        self._empty = empty
        self._what = what
        self._stamp: tuple[int, int] | None = None
        self._value = empty
        # Advanced whenever the content taken changes (loaded again, or the file gone).
        self.revision = 0

    def current(self) -> T:
        """The file's content as parsed; a file gone is empty, a file that no longer parses
        keeps the last good content (rather than lock everyone out), and says so."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._stamp is not None:
                self.revision += 1
            self._value, self._stamp = self._empty, None
            return self._value
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                self._value = self._read()
                self._stamp = stamp
                self.revision += 1
                log.info("%s loaded from %s", self._what, self.path)
            except _UNUSABLE as error:
                log.error("%s file %s is invalid (%s); keeping the previous ones", self._what, self.path, error)
        return self._value

    def problem(self) -> str | None:
        """Why the file cannot be taken as it is now (None: it can, or there is none): a
        master starting on such a file says so and stops rather than run without it."""
        if not self.path.exists():
            return None
        try:
            self._read()
        except _UNUSABLE as error:
            return (error.strerror or str(error)) if isinstance(error, OSError) else str(error)
        return None

    def _read(self) -> T:
        return self._parse(tomllib.loads(self.path.read_text()))


# A file that cannot be read (a folder, no permission) or parsed keeps the last good content.
_UNUSABLE = (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError, ValueError)
