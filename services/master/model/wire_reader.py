"""The master's compiled reader of snapshot messages (_wire.c), where it can be had.

Installing builds it when a C compiler and Python's headers are at hand (setup.py marks
it optional); without it the master reads every message in Python, as it does for what
the reader declines anyway: the same answers, slower (docs/performance.md). Setting
IMSYNC_WIRE_READER=python turns it off on purpose, which is how scripts/test runs the
store and sync tests without it.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

log = logging.getLogger(__name__)


def load() -> ModuleType | None:
    if os.environ.get("IMSYNC_WIRE_READER", "c") == "python":
        return None
    try:
        return importlib.import_module("services.master.model._wire")
    except ImportError as error:
        log.warning("the compiled reader of messages is not built (%s): snapshots are read in Python, slower", error)
        return None


READER = load()
