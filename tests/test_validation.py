"""The checks a sync message passes before the store (a bad timestamp is found fast and
named exactly), and what the one pass over every entity gathers for the indexes."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.common.sample import SampleAccount
from services.master.model import time_keys
from services.master.model.errors import InvalidArgument
from services.master.model.intake import COLLECTIONS, Intake, clean_batch

from .conftest import NOW


@pytest.mark.parametrize(
    ("where", "seconds", "nanos"),
    [
        ("messages[3].create_time", 253_402_300_800, 0),
        ("comments[1].created_at", -62_135_596_801, 0),
        ("messages[0].create_time", NOW, 1_000_000_000),
    ],
)
def test_a_timestamp_out_of_range_is_refused_by_its_path(where: str, seconds: int, nanos: int) -> None:
    sample = SampleAccount("acc", seed=2, now=NOW)
    sample.fill(conversations=2, messages_per_conversation=3, contents=1, comments_per_content=3)
    batch = sync_pb2.EntityBatch()
    batch.CopyFrom(sample.batch)
    clean_batch(batch, "acc", "delta.upserts")  # the sample itself is clean
    collection, _, rest = where.partition("[")
    index, _, field = rest.partition("].")
    stamp = getattr(getattr(batch, collection)[int(index)], field)
    stamp.seconds, stamp.nanos = seconds, nanos
    with pytest.raises(InvalidArgument) as refused:
        clean_batch(batch, "acc", "delta.upserts")
    assert refused.value.field == f"delta.upserts.{where}"


def _holding_timestamps(descriptor: Descriptor, seen: frozenset[str] = frozenset()) -> list[str]:
    """The fields of a message type that are, or hold at any depth, a Timestamp."""
    held = []
    for field in descriptor.fields:
        kind = field.message_type
        if kind is None or kind.full_name in seen:
            continue
        if kind.full_name == "google.protobuf.Timestamp" or _holding_timestamps(kind, seen | {descriptor.full_name}):
            held.append(field.name)
    return held


def test_the_hot_loops_check_every_timestamp_a_worker_owns() -> None:
    # Messages and comments check their timestamps by hand (intake.py, _wire.c); a new
    # Timestamp field in the proto must be checked there too, and this fails until it is.
    for name, entity, checked in (("messages", e.Message, "create_time"), ("comments", e.Comment, "created_at")):
        master_owned = COLLECTIONS[name][1]
        assert [f for f in _holding_timestamps(entity.DESCRIPTOR) if f not in master_owned] == [checked]


def test_the_intake_gathers_the_keys_the_orders_are_made_of() -> None:
    sample = SampleAccount("acc", seed=4, now=NOW)
    sample.fill(conversations=3, messages_per_conversation=4, contents=2, comments_per_content=3)
    intake = Intake.of("acc", [sample.batch])
    assert intake.message_keys == [time_keys.time_key(m.create_time, m.message_id) for m in sample.batch.messages]
    assert intake.comment_keys == [time_keys.time_key(c.created_at, c.comment_id) for c in sample.batch.comments]
    by_conversation: dict[str, list[bytes]] = {}
    for m in sample.batch.messages:
        by_conversation.setdefault(m.conversation_id, []).append(time_keys.time_key(m.create_time, m.message_id))
    assert intake.messages_by_conversation == by_conversation
    assert intake.inbound_ids == [m.message_id for m in sample.batch.messages if m.direction == e.DIRECTION_INBOUND]


def test_an_id_sent_twice_keeps_its_last_entity_once_in_every_list() -> None:
    sample = SampleAccount("acc", seed=4, now=NOW)
    sample.fill(conversations=2, messages_per_conversation=3, contents=1, comments_per_content=2)
    again = sync_pb2.EntityBatch()
    again.messages.add().CopyFrom(sample.batch.messages[0])
    again.messages[0].create_time.seconds += 60
    again.messages[0].direction = e.DIRECTION_OUTBOUND
    again.comments.add().CopyFrom(sample.batch.comments[0])
    again.comments[0].created_at.seconds += 60
    intake = Intake.of("acc", [sample.batch, again]).settled()
    assert len(intake.message_keys) == len(intake.messages) == len(sample.batch.messages)
    assert time_keys.time_key(again.messages[0].create_time, again.messages[0].message_id) in intake.message_keys
    assert again.messages[0].message_id not in intake.inbound_ids
    assert sum(len(keys) for keys in intake.messages_by_conversation.values()) == len(intake.messages)
    assert len(intake.comment_keys) == len(intake.comment_list) == len(sample.batch.comments)
    assert time_keys.time_key(again.comments[0].created_at, again.comments[0].comment_id) in intake.comment_keys
