"""The master's compiled reader of snapshot messages (_wire.c), where it can be had
(compiled.py); IMSYNC_WIRE_READER=python turns it off, which is how scripts/test runs the
store and sync tests without it."""

from __future__ import annotations

from services.master.model.compiled import load

READER = load("_wire", "IMSYNC_WIRE_READER", "snapshots are read in Python, slower")
