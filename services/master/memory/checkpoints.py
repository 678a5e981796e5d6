"""An account's whole state as a checkpoint of the journal, and back.

A checkpoint is a head (`AccountCheckpoint`: version, profile, the master's own state)
and EntityBatch parts of at most 10,000 entities each, far below SQLite's blob limit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from imsync.journal.v1 import journal_pb2 as jpb
from services.master.memory.records import encode_entities
from services.master.memory.recovery import Checkpoint
from services.master.model import threads as thread_records
from services.master.model.account_base import Handling
from services.master.model.account_state import AccountState
from services.master.model.entity_table import EntityTable
from services.master.model.intake import Intake

# Entities per part of a checkpoint.
PART = 10_000


def capture(state: AccountState) -> Callable[[], list[bytes]]:
    """The account's state now, as a function that encodes it (on another thread) into a
    checkpoint head and its entity parts. Only references and shallow copies are taken
    here: entities are never changed in place once stored."""
    handling = state.handling
    account_id, version, account, applied = state.account_id, state.version, state.account, list(state.applied_versions)
    read_at = dict(handling.read_at)
    pinned, muted = sorted(handling.pinned), sorted(handling.muted)
    new_items, new_contents = sorted(handling.new_items), sorted(handling.new_contents)
    horizons = dict(handling.horizons)
    # Handlings are replaced, never changed in place (model/threads.py): references suffice.
    threads = dict(handling.threads)
    groups: list[tuple[int, Callable[[], list[Any]]]] = [
        (1, _later(state.contents)),
        (2, _later(state.comments)),
        (3, _later(state.conversations)),
        (4, _later(state.messages)),
        (5, _later(state.notifications)),
    ]

    def encode() -> list[bytes]:
        parts: list[bytes] = []
        for number, later in groups:
            entities = later()
            for start in range(0, len(entities), PART):
                parts.append(encode_entities({number: entities[start : start + PART]}))
        head = jpb.AccountCheckpoint(
            account_id=account_id,
            version=version,
            account=account,
            applied_versions=applied,
            pinned_conversation_ids=pinned,
            muted_conversation_ids=muted,
            new_item_ids=new_items,
            new_content_ids=new_contents,
            parts=len(parts),
        )
        for item, read_ns in read_at.items():
            head.read_marks.add(item_id=item).read_at.FromNanoseconds(read_ns)
        for thread_key, thread in threads.items():
            head.threads.append(thread_records.record(account_id, thread_key, thread))
        if "messages" in horizons:
            head.messages_horizon.FromNanoseconds(horizons["messages"])
        if "comments" in horizons:
            head.comments_horizon.FromNanoseconds(horizons["comments"])
        return [head.SerializeToString(), *parts]

    return encode


def _later(entities: Mapping[str, Any]) -> Callable[[], list[Any]]:
    """The entities as they are now, listed when called (a table's wrappers are made then)."""
    if isinstance(entities, EntityTable):
        return entities.values_later()
    values = list(entities.values())
    return lambda: values


def state_of(checkpoint: Checkpoint) -> AccountState:
    """The account as a checkpoint holds it, its indexes and counters built."""
    head = checkpoint.head
    handling = Handling(
        read_at={mark.item_id: mark.read_at.ToNanoseconds() for mark in head.read_marks},
        pinned=set(head.pinned_conversation_ids),
        muted=set(head.muted_conversation_ids),
        new_items=set(head.new_item_ids),
        new_contents=set(head.new_content_ids),
        threads={thread_records.key_of(record): record.handling for record in head.threads},
    )
    if head.HasField("messages_horizon"):
        handling.horizons["messages"] = head.messages_horizon.ToNanoseconds()
    if head.HasField("comments_horizon"):
        handling.horizons["comments"] = head.comments_horizon.ToNanoseconds()
    state = AccountState.build(
        version=head.version,
        account=head.account,
        intake=Intake.of(
            head.account_id, checkpoint.parts, "checkpoint", [(body, ()) for body in checkpoint.bodies] or None
        ),
        handling=handling,
        previous=None,
    )
    state.applied_versions.extend(head.applied_versions)
    return state
