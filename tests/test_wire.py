"""The compiled reader of snapshot messages (services/master/model/_wire.c) against the Python
loop it stands in for: on every encoding upb parses, taking a chunk with its bytes gives
what taking it without them gives (the same refusal, or the same facts), and the reader
does read what encoders plainly write, rather than always leaving it to Python.

scripts/test runs these tests (and the sync fuzzer) once more against a build under
AddressSanitizer and UndefinedBehaviorSanitizer, where the compiler has them
(scripts/asan-compiled): they catch a varint read past the end of its bytes.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.master.model import compiled
from services.master.model.errors import InvalidArgument
from services.master.model.intake import Intake
from services.master.model.validation import MAX_SECONDS, MIN_SECONDS
from services.master.sync.hub import ENTITIES_PATH


def _reader() -> Any:
    """The compiled reader: these tests are about it (scripts/test runs the rest without it)."""
    if compiled.READER is None:
        pytest.skip("the compiled reader is off or not built")
    return compiled.READER


ACCOUNT = "acc"
PATH = "snapshot.entities"


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _len(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + _varint(len(payload)) + payload


def _int(number: int, value: int) -> bytes:
    return _tag(number, 0) + _varint(value)


def _request(*messages: bytes) -> bytes:
    """A snapshot request whose entities are `messages` (each an encoded Message)."""
    return _len(2, _int(2, 1) + _len(7, b"".join(_len(4, m) for m in messages)))


def _message(
    message_id: str = "m1",
    conversation_id: str = "c1",
    seconds: int = 1_790_000_000,
    nanos: int = 5,
    direction: int = 1,
    **fields: Any,
) -> bytes:
    return e.Message(
        message_id=message_id,
        conversation_id=conversation_id,
        create_time=Timestamp(seconds=seconds, nanos=nanos),
        direction=e.Direction.ValueType(direction),
        **fields,
    ).SerializeToString()


def _facts(intake: Intake) -> tuple[Any, ...]:
    return (
        dict(intake.messages.where),
        intake.message_keys,
        intake.messages_by_conversation,
        intake.inbound_keys,
        intake.inbound_conversations,
        intake.inbound_ids,
        [(key, m.SerializeToString()) for key, m in intake.undirected],
        [m.SerializeToString() for m in intake.messages.values()],
    )


def _take(data: bytes, wire: bool) -> tuple[Any, ...] | tuple[str, str | None]:
    batch = sync_pb2.SyncDataRequest.FromString(data).snapshot.entities
    intake = Intake(ACCOUNT)
    try:
        intake.take(batch, PATH, (data, ENTITIES_PATH) if wire else None)
    except InvalidArgument as refused:
        return ("refused", refused.field)
    return _facts(intake)


def _reads(data: bytes) -> bool:
    """Whether the compiled reader takes the chunk itself (rather than leaving it to Python)."""
    items = sync_pb2.SyncDataRequest.FromString(data).snapshot.entities.messages
    taken = _reader().take_messages(
        data, (*ENTITIES_PATH, 4), ACCOUNT, MIN_SECONDS, MAX_SECONDS, 0, items, {}, [], {}, [], [], [], []
    )
    return bool(taken)


def _agrees(data: bytes) -> bool:
    with_wire, without = _take(data, wire=True), _take(data, wire=False)
    assert with_wire == without
    return _reads(data)


def test_plain_encodings_are_read_off_the_wire_as_python_reads_them() -> None:
    plain = [
        _message("m1", "c1", direction=e.DIRECTION_INBOUND, account_id=ACCOUNT, content="hi", sender={"user_id": "u"}),
        _message("m2", "c1", direction=e.DIRECTION_OUTBOUND, nanos=0),
        _message("\u6d88\u606f-3", "c2", direction=e.DIRECTION_UNSPECIFIED, seconds=MIN_SECONDS),
        _message(
            "m4", "c1", direction=7, seconds=MAX_SECONDS, nanos=999_999_999
        ),  # a direction this master does not know
        e.Message(message_id="m5", conversation_id="c3").SerializeToString(),  # no time: the epoch
    ]
    assert _agrees(_request(*plain))
    taken = _take(_request(*plain), wire=True)
    assert taken[5] == ["m1"] and len(taken[6]) == 2  # one inbound, two without a direction
    assert _agrees(_request())  # no messages at all


@pytest.mark.parametrize(
    "message",
    [
        _len(99, b"\x01\x02") + _message() + _int(98, 2**63) + _tag(97, 1) + b"8 bytes." + _tag(96, 5) + b"4byt",
        _int(13, 1)
        + _len(8, _int(2, 5) + _int(1, 1_790_000_000))
        + _len(3, b"c1")
        + _len(2, b"m1"),  # fields in any order
        _message()[:-1] + b"\x81\x00",  # the direction as a varint longer than it need be
    ],
    ids=["unknown fields", "any order", "long varint"],
)
def test_what_any_encoder_may_write_is_read(message: bytes) -> None:
    assert _agrees(_request(message))


@pytest.mark.parametrize(
    "data",
    [
        _request(_message("m1") + _len(2, b"m2")),  # a field twice: the last is kept
        _request(_message(nanos=0) + _len(8, _int(2, 7))),  # a Timestamp twice: upb merges them
        _request(_message() + _int(13, -1)),  # a negative enum number: ten bytes
        _request(_message(direction=0) + _int(13, 2**32 + 1)),  # an enum number of 33 bits: upb keeps 32 (inbound)
        _request(_message(nanos=0) + _len(8, _int(1, 1_790_000_000) + _int(2, 2**32 + 5))),  # nanos keep 32 bits
        _request(_message() + _tag(2, 0) + b"\x05"),  # the id as a varint: upb keeps it as unknown, the id is ""
        _request(_message() + _tag(50, 3) + _int(1, 1) + _tag(50, 4)),  # a group
        _len(2, _int(2, 1) + _len(7, _len(4, _message("m1"))) + _len(7, _len(4, _message("m2")))),  # entities twice
        _len(2, _len(7, _len(4, _message("m1"))))
        + _len(2, _int(2, 1) + _len(7, _len(4, _message("m2")))),  # snapshot twice
    ],
    ids=[
        "id twice",
        "time twice",
        "negative enum",
        "wide enum",
        "wide nanos",
        "wrong wire type",
        "group",
        "entities twice",
        "snapshot twice",
    ],
)
def test_what_upb_merges_or_reads_its_own_way_is_left_to_python(data: bytes) -> None:
    assert not _agrees(data)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (_message(message_id=""), "messages[1].message_id"),
        (_message(conversation_id=""), "messages[1].conversation_id"),
        (_message(account_id="someone-else"), "messages[1].account_id"),
        (_message(seconds=MAX_SECONDS + 1), "messages[1].create_time"),
        (_message(seconds=MIN_SECONDS - 1), "messages[1].create_time"),
    ],
)
def test_a_message_python_refuses_is_refused_by_name(message: bytes, field: str) -> None:
    data = _request(_message("m0"), message)
    assert not _agrees(data)
    assert _take(data, wire=True) == ("refused", f"{PATH}.{field}")


@st.composite
def _encoded(draw: st.DrawFn) -> bytes:
    message = e.Message(
        message_id=draw(st.text(min_size=0, max_size=6)),
        conversation_id=draw(st.sampled_from(["c1", "c2", "\u4f1a\u8bdd", ""])),
        account_id=draw(st.sampled_from(["", "", ACCOUNT, "other"])),
        create_time=Timestamp(
            seconds=draw(
                st.one_of(
                    st.integers(MIN_SECONDS - 2, MIN_SECONDS + 2),
                    st.integers(MAX_SECONDS - 2, MAX_SECONDS + 2),
                    st.integers(-(2**40), 2**40),
                )
            ),
            nanos=draw(st.sampled_from([0, 1, 999_999_999, 1_000_000_000, -1])),
        ),
        direction=e.Direction.ValueType(draw(st.sampled_from([0, 1, 2, 3, -5]))),
        content=draw(st.text(max_size=4)),
    ).SerializeToString()
    extra = draw(st.sampled_from([b"", _int(99, 3), _len(2, b"again"), _len(8, _int(2, 3))]))
    return message + extra


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(_encoded(), max_size=6), trailing=st.sampled_from([b"", _int(40, 1), _len(6, b"")]))
def test_with_or_without_the_bytes_an_intake_is_the_same(messages: list[bytes], trailing: bytes) -> None:
    _agrees(_request(*messages) + trailing)


@settings(max_examples=400, deadline=None)
@given(
    messages=st.lists(_encoded(), min_size=1, max_size=4),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
    cut=st.integers(0, 10_000),
)
def test_damaged_bytes_that_still_parse_are_read_as_upb_reads_them(
    messages: list[bytes], flips: list[tuple[int, int]], cut: int
) -> None:
    """Bytes changed here and there, or cut short: whatever upb still parses, both paths
    take alike; whatever it does not never reaches the reader."""
    data = bytearray(_request(*messages))
    for at, value in flips:
        data[at % len(data)] = value
    damaged = bytes(data[: len(data) - cut % 8])
    try:
        sync_pb2.SyncDataRequest.FromString(damaged)
    except DecodeError:
        return
    _agrees(damaged)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=200), count=st.integers(0, 5), path=st.sampled_from([(4,), (2, 7, 4), (1, 4), (7, 2, 7, 4)])
)
def test_any_bytes_at_all_are_read_or_declined_without_harm(data: bytes, count: int, path: tuple[int, ...]) -> None:
    """The reader's own safety, whatever it is handed (even bytes upb refused): it reads
    nothing outside them, and what it reads it reads whole or not at all."""
    items = [e.Message()] * count
    places: dict[str, Any] = {}
    keys: list[bytes] = []
    taken = _reader().take_messages(
        data, path, ACCOUNT, MIN_SECONDS, MAX_SECONDS, 0, items, places, keys, {}, [], [], [], []
    )
    assert len(keys) == (count if taken else 0)
