"""The master's compiled parts (setup.py), where they can be had: _wire.c reads snapshot
messages off the wire (intake.py), _pages.c runs the loops of the one-loop pages
(json_views.py).

Installing builds them when a C compiler and Python's headers are at hand (setup.py marks
them optional); without one the master does the same in Python, as it does anyway for
what they decline: the same answers, slower (docs/performance.md). An environment
variable turns each off on purpose (IMSYNC_WIRE_READER=python, IMSYNC_PAGE_LOOPS=python),
which is how scripts/test runs the tests that cover them without them.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

log = logging.getLogger(__name__)


def load(name: str, switch: str, without: str) -> ModuleType | None:
    """services.master.model.<name>, or None where `switch` is "python" or it is not built
    (said once, with `without`: what the master does instead)."""
    if os.environ.get(switch, "c") == "python":
        return None
    try:
        return importlib.import_module(f"services.master.model.{name}")
    except ImportError as error:
        log.warning("%s is not built (%s): %s", name, error, without)
        return None


READER = load("_wire", "IMSYNC_WIRE_READER", "snapshots are read in Python, slower")
PAGES = load("_pages", "IMSYNC_PAGE_LOOPS", "pages are joined in Python, slower")
