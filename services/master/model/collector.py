"""How the master uses Python's cyclic garbage collector.

A master's heap is mostly the accounts it holds: protobuf entities by the million, with
their dictionaries and sort keys, in no reference cycle (reference counting frees a state
a snapshot replaces). Left to itself, the collector walks every one of them each time
the heap has grown by a quarter, with the event loop stopped, and a snapshot's hundreds
of thousands of new objects set off a young collection every few hundred.

So what a snapshot, a restore or a chunk makes is made with the collector paused, and
then everything alive is frozen (`gc.freeze`): out of the collector's sight, still freed
by reference counting. Collections walk only what is newer. An object the freeze caught
that later falls into a cycle (a finished stream's objects, say) waits for `maintain()`,
which the master calls every 10 minutes while anything is frozen: one full
collection, after which the collector works as usual until the next freeze.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """Pauses the collector while the block makes objects that will live long, then
    freezes everything alive. (Nothing awaits inside: the pause never outlasts one step
    of the event loop.)"""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def maintain() -> bool:
    """Collects what the freezes since the last call hold in cycles: everything is
    unfrozen and collected once. False when nothing is frozen."""
    if not gc.get_freeze_count():
        return False
    gc.unfreeze()
    gc.collect()
    return True


def thaw() -> None:
    """Hands everything frozen back to the collector (a master stopping, a test ending)."""
    gc.unfreeze()
