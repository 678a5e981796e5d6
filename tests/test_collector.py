"""The master's use of the cyclic garbage collector (collector.py)."""

from __future__ import annotations

import gc
import weakref

from services.master.model import collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_a_bulk_block_runs_with_the_collector_paused_and_freezes_what_is_alive() -> None:
    assert gc.isenabled()
    with collector.bulk():
        assert not gc.isenabled()
        kept = [Node() for _ in range(10)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(kept)


def test_a_cycle_the_freeze_caught_is_collected_by_maintenance() -> None:
    node = Node()
    gone = weakref.ref(node)
    with collector.bulk():
        pass
    del node
    gc.collect()
    assert gone() is not None, "frozen: out of the collector's sight"
    assert collector.maintain()
    assert gone() is None
    assert not collector.maintain(), "nothing was frozen since"


def test_a_bulk_block_leaves_a_paused_collector_paused() -> None:
    gc.disable()
    try:
        with collector.bulk():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
