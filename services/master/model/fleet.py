"""The fleet's accounts as data (fleet.proto): what a managed account may hold, how an
update mask changes one, and the events of assignments. One definition for every store
backend (memory/fleet.py, redis/fleet.py) and for the scheduler (fleet/scheduler.py)."""

from __future__ import annotations

import re
import time

from google.protobuf.field_mask_pb2 import FieldMask

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import fleet_pb2 as fl
from services.master.model.account_base import Presence
from services.master.model.errors import InvalidArgument

ADAPTERS = ("douyin", "sample")
# The platform whose pages each adapter reads (the sample adapter's data imitates Douyin's).
PLATFORMS = {"douyin": e.PLATFORM_DOUYIN, "sample": e.PLATFORM_DOUYIN}
MAX_ACCOUNTS = 10_000
MAX_DISPLAY_NAME = 80
MAX_LABELS = 16
# A session's storage state as a worker uploads it.
MAX_SESSION_BYTES = 1024 * 1024
_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_LABEL = re.compile(r"[A-Za-z0-9._/-]{1,63}")
_URL = re.compile(r"https?://[^\s]{1,500}")
# What an update may change (all but the id and the adapter).
MUTABLE = (
    "display_name",
    "login_method",
    "base_url",
    "paused",
    "worker_labels",
    "login_uid",
    "login_password",
    "seed",
)


def check(account: fl.ManagedAccount, field: str = "account") -> fl.ManagedAccount:
    """The account as kept (a copy, its output-only fields cleared); InvalidArgument naming
    the field otherwise."""
    kept = fl.ManagedAccount()
    kept.CopyFrom(account)
    for output in ("create_time", "update_time", "worker_id", "has_session"):
        kept.ClearField(output)
    if not _ID.fullmatch(kept.account_id):
        raise InvalidArgument("1 to 128 letters, digits, '.', '_' or '-'", field=f"{field}.account_id")
    if kept.adapter not in ADAPTERS:
        raise InvalidArgument(f"one of {', '.join(ADAPTERS)}", field=f"{field}.adapter")
    kept.display_name = kept.display_name.strip()
    if len(kept.display_name) > MAX_DISPLAY_NAME or not kept.display_name.isprintable():
        raise InvalidArgument(f"at most {MAX_DISPLAY_NAME} printable characters", field=f"{field}.display_name")
    if kept.login_method not in fl.LoginMethod.values():
        raise InvalidArgument("not a LoginMethod", field=f"{field}.login_method")
    if len(kept.worker_labels) > MAX_LABELS:
        raise InvalidArgument(f"at most {MAX_LABELS} labels", field=f"{field}.worker_labels")
    for name, value in kept.worker_labels.items():
        if not _LABEL.fullmatch(name) or not _LABEL.fullmatch(value):
            raise InvalidArgument(
                "names and values of 1 to 63 letters, digits, '.', '_', '/' or '-'", field=f"{field}.worker_labels"
            )
    if kept.adapter == "douyin":
        if not _URL.fullmatch(kept.base_url):
            raise InvalidArgument("an http:// or https:// address", field=f"{field}.base_url")
        if kept.login_method == fl.LOGIN_METHOD_UNSPECIFIED:
            kept.login_method = fl.LOGIN_METHOD_QR_CODE
        if kept.login_method == fl.LOGIN_METHOD_PASSWORD and not (kept.login_uid and kept.login_password):
            raise InvalidArgument(
                "login_uid and login_password are required to log in by password", field=f"{field}.login_uid"
            )
    elif kept.base_url and not _URL.fullmatch(kept.base_url):
        raise InvalidArgument("an http:// or https:// address", field=f"{field}.base_url")
    for name in ("login_uid", "login_password"):
        if len(getattr(kept, name)) > 256:
            raise InvalidArgument("at most 256 characters", field=f"{field}.{name}")
    return kept


def updated(old: fl.ManagedAccount, change: fl.ManagedAccount, mask: FieldMask) -> fl.ManagedAccount:
    """`old` with the fields the mask names taken from `change`; without a mask, the fields
    `change` sets (AIP-134: a field left at its default is left alone, so un-pausing
    needs the mask)."""
    paths = list(mask.paths) or [field.name for field, _ in change.ListFields() if field.name in MUTABLE]
    new = fl.ManagedAccount()
    new.CopyFrom(old)
    for path in paths:
        name = path.split(".", 1)[0]
        if name not in MUTABLE:
            raise InvalidArgument(f"{path!r} cannot be changed; one of {', '.join(MUTABLE)}", field="update_mask")
        if name == "worker_labels":
            new.worker_labels.clear()
            new.worker_labels.update(change.worker_labels)
        else:
            setattr(new, name, getattr(change, name))
    return new


def stamped(account: fl.ManagedAccount, *, create: bool) -> fl.ManagedAccount:
    now = time.time_ns()
    if create:
        account.create_time.FromNanoseconds(now)
    account.update_time.FromNanoseconds(now)
    return account


def shown(account: fl.ManagedAccount) -> fl.ManagedAccount:
    """The account as an API answer shows it: never its password."""
    copy = fl.ManagedAccount()
    copy.CopyFrom(account)
    copy.ClearField("login_password")
    return copy


def assignment_event(account_id: str, worker_id: str, previous: str, reason: str) -> ev.Event:
    event = ev.Event(
        type=ev.EVENT_TYPE_ACCOUNT_ASSIGNED,
        account_id=account_id,
        assignment=fl.AccountAssignment(
            account_id=account_id, worker_id=worker_id, previous_worker_id=previous, reason=reason
        ),
    )
    event.create_time.GetCurrentTime()
    return event


def eligible(account: fl.ManagedAccount, labels: dict[str, str]) -> bool:
    """Whether a worker offering `labels` may be given the account."""
    return all(labels.get(name) == value for name, value in account.worker_labels.items())


def mirror(presence: Presence, managed: fl.ManagedAccount | None) -> bool:
    """Puts on the account's presence what every view of it shows of its fleet entry
    (`managed`; None: not the fleet's): whether it is paused, what the team calls it, its
    adapter's platform. Whether anything changed."""
    if managed is None:
        wanted = (False, "", e.PLATFORM_UNSPECIFIED)
    else:
        wanted = (managed.paused, managed.display_name, PLATFORMS.get(managed.adapter, e.PLATFORM_UNSPECIFIED))
    if (presence.paused, presence.display_name, presence.platform) == wanted:
        return False
    presence.paused, presence.display_name, presence.platform = wanted
    return True
