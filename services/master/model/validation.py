"""Checks of what a worker sends, before anything of it reaches the store: the ranges of
timestamps, removals and the account's profile (the entities are checked as they are
taken in: intake.py).

Every refusal names the offending field by its path in the sync message
(e.g. `snapshot.entities.messages[3].create_time`), so a worker's log says what to fix.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from functools import cache

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.master.model.errors import InvalidArgument

# google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
MIN_SECONDS = -62_135_596_800
MAX_SECONDS = 253_402_300_799

_PLANNING: set[str] = set()


@cache
def _timestamp_plan(descriptor: Descriptor) -> tuple[tuple[str, bool, bool], ...]:
    """(field, repeated, is a Timestamp) for each field of a message type holding a
    Timestamp, directly or deeper; decided once per type."""
    _PLANNING.add(descriptor.full_name)
    plan = []
    for field in descriptor.fields:
        kind = field.message_type
        if kind is None:
            continue
        if kind.full_name == "google.protobuf.Timestamp":
            plan.append((field.name, field.is_repeated, True))
        elif kind.full_name in _PLANNING:
            # A type that holds itself: walk it field by field, as a nested message.
            plan.append((field.name, field.is_repeated, False))
        elif _timestamp_plan(kind):
            plan.append((field.name, field.is_repeated, False))
    _PLANNING.discard(descriptor.full_name)
    return tuple(plan)


def timestamps_fit(message: ProtoMessage, skip: Collection[str] = ()) -> bool:
    """Whether every Timestamp of `message`, however deep, is in range; fields named in
    `skip` (the master's own, never shown as sent) are not looked at."""
    for name, repeated, is_timestamp in _timestamp_plan(message.DESCRIPTOR):
        if name in skip:
            continue
        values = getattr(message, name)
        for item in values if repeated else (values,):
            if is_timestamp:
                if not (MIN_SECONDS <= item.seconds <= MAX_SECONDS and 0 <= item.nanos <= 999_999_999):
                    return False
            elif not timestamps_fit(item):
                return False
    return True


def check_timestamps(message: ProtoMessage, path: str) -> None:
    """Refuses any Timestamp, however deep, outside the range protojson can print."""
    if timestamps_fit(message):
        return
    find_bad_timestamp(message, path)


def find_bad_timestamp(message: ProtoMessage, path: str, skip: Collection[str] = ()) -> None:
    """The slow walk that names the field, once a bad timestamp is known to be there."""
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None or descriptor.name in skip:
            continue
        values: Iterable[ProtoMessage] = value if descriptor.is_repeated else (value,)
        for index, item in enumerate(values):
            where = f"{path}.{descriptor.name}" + (f"[{index}]" if descriptor.is_repeated else "")
            if isinstance(item, Timestamp):
                if not (MIN_SECONDS <= item.seconds <= MAX_SECONDS and 0 <= item.nanos <= 999_999_999):
                    raise InvalidArgument("timestamp out of range", field=where)
            else:
                find_bad_timestamp(item, where)


def clean_removals(removals: sync_pb2.Removals, path: str) -> None:
    for name in ("content_ids", "comment_ids", "conversation_ids", "message_ids", "notification_ids"):
        for index, key in enumerate(getattr(removals, name)):
            if not key:
                raise InvalidArgument("must not be empty", field=f"{path}.{name}[{index}]")


def clean_account(account: e.Account, account_id: str, path: str) -> None:
    if account.account_id and account.account_id != account_id:
        raise InvalidArgument(
            f"is {account.account_id!r}, the snapshot's account is {account_id!r}", field=f"{path}.account_id"
        )
    account.account_id = account_id
    account.ClearField("version")
    check_timestamps(account, path)


# Bounds on what a worker says of an account's health: shown to every reader of the account.
MAX_STATUS_TEXT = 4000
MAX_LOGIN_TEXT = 1000
MAX_QR_BYTES = 256 * 1024
MAX_COLLECTIONS = 16


def check_status(report: sync_pb2.AccountStatusReport, path: str) -> None:
    """Refuses a status report whose text, image or times a reader could not be shown."""
    for name, bound in (("last_error", MAX_STATUS_TEXT), ("last_error_reason", 64)):
        if len(getattr(report, name)) > bound:
            raise InvalidArgument(f"at most {bound} characters", field=f"{path}.{name}")
    if len(report.collections) > MAX_COLLECTIONS:
        raise InvalidArgument(f"at most {MAX_COLLECTIONS} collections", field=f"{path}.collections")
    for index, health in enumerate(report.collections):
        if len(health.collection) > 64 or len(health.missed) > MAX_STATUS_TEXT:
            raise InvalidArgument(
                f"collection at most 64 characters, missed at most {MAX_STATUS_TEXT}",
                field=f"{path}.collections[{index}]",
            )
    login = report.login
    if len(login.qr_png) > MAX_QR_BYTES:
        raise InvalidArgument(f"at most {MAX_QR_BYTES} bytes", field=f"{path}.login.qr_png")
    for name in ("prompt", "error"):
        if len(getattr(login, name)) > MAX_LOGIN_TEXT:
            raise InvalidArgument(f"at most {MAX_LOGIN_TEXT} characters", field=f"{path}.login.{name}")
    duration = report.last_crawl_duration
    if not (0 <= duration.seconds <= 10 * 86_400 and 0 <= duration.nanos <= 999_999_999):
        raise InvalidArgument("between 0 and 10 days", field=f"{path}.last_crawl_duration")
    check_timestamps(report, path)
