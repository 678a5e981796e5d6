"""A TOML file of credentials, read again whenever it changes, so that tokens and keys are
added, rotated and revoked without a restart."""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class WatchedToml(Generic[T]):
    def __init__(self, path: Path, parse: Callable[[dict[str, Any]], T], empty: T, what: str) -> None:
        self.path = path
        self._parse = parse
        self._empty = empty
        self._what = what
        self._stamp: tuple[int, int] | None = None
        self._value = empty

    def current(self) -> T:
        """The file's content as parsed; a file gone is empty, a file that no longer parses
        keeps the last good content (rather than lock everyone out), and says so."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._value, self._stamp = self._empty, None
            return self._value
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                self._value = self._parse(tomllib.loads(self.path.read_text()))
                self._stamp = stamp
                log.info("%s loaded from %s", self._what, self.path)
            except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError, ValueError) as error:
                log.error("%s file %s is invalid (%s); keeping the previous ones", self._what, self.path, error)
        return self._value
