"""The journal's file and its records: the schema, and how snapshots, deltas and
checkpoints are encoded, each row with a CRC32 of its body (journal.py says how the
journal works)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

from imsync.v1 import sync_pb2
from services.master.model.errors import NotPersisted

FILE_NAME = "journal.sqlite3"
FORMAT = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY, account_id TEXT NOT NULL, crc INTEGER NOT NULL, body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_by_account ON journal (account_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    account_id TEXT NOT NULL, part INTEGER NOT NULL, seq INTEGER NOT NULL,
    crc INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (account_id, part)
);
CREATE TABLE IF NOT EXISTS commands (request_id TEXT PRIMARY KEY, crc INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS templates (template_id TEXT PRIMARY KEY, crc INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS fleet (account_id TEXT PRIMARY KEY, crc INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (account_id TEXT PRIMARY KEY, crc INTEGER NOT NULL, body BLOB NOT NULL);
"""


class JournalFailed(NotPersisted):
    """The journal could not write; nothing after this can be promised."""


# ------------------------------------------------------------------ encoding


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field: protobuf parses concatenated fields as one
    message, so big parts are serialized once, never copied into a new message first."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_snapshot(
    account_id: str,
    version: int,
    collections: Iterable[sync_pb2.Collection.ValueType],
    account: object,
    entities: Sequence[sync_pb2.EntityBatch],
) -> bytes:
    """One journal record of a snapshot; its chunks' batches are written one after the
    other, which reads back as one batch (the repeated fields of each add up)."""
    head = sync_pb2.Snapshot(account_id=account_id, version=version, collections=collections, last=True)
    head.account.CopyFrom(account)  # type: ignore[arg-type]
    body = head.SerializeToString() + field_bytes(7, b"".join(batch.SerializeToString() for batch in entities))
    return field_bytes(1, body)


def encode_delta(delta: sync_pb2.Delta, upserts: sync_pb2.EntityBatch, removals: sync_pb2.Removals) -> bytes:
    body = (
        delta.SerializeToString()
        + field_bytes(5, upserts.SerializeToString())
        + field_bytes(6, removals.SerializeToString())
    )
    return field_bytes(2, body)


def encode_entities(groups: dict[int, list[object]]) -> bytes:
    """An EntityBatch of the given field numbers and entities, serialized entity by entity."""
    return b"".join(
        field_bytes(number, entity.SerializeToString())  # type: ignore[attr-defined]
        for number, entities in groups.items()
        for entity in entities
    )


def _crc(body: bytes) -> int:
    return zlib.crc32(body)
