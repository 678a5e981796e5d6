"""How an account's state changes with a snapshot or a delta: one definition for every
store backend, so that both apply exactly the same rules (versions, what is new, what
retention keeps out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from imsync.v1 import sync_pb2

from .account_state import AccountState, Handling
from .errors import FailedPrecondition
from .store import DeltaData, SnapshotData

T = TypeVar("T")

ALL_COLLECTIONS = frozenset(
    {
        sync_pb2.COLLECTION_CONTENTS,
        sync_pb2.COLLECTION_COMMENTS,
        sync_pb2.COLLECTION_CONVERSATIONS,
        sync_pb2.COLLECTION_MESSAGES,
        sync_pb2.COLLECTION_NOTIFICATIONS,
    }
)


def snapshot_is_new(current: AccountState | None, snapshot: SnapshotData) -> bool:
    """False for a snapshot delivered again; raises for one older than the applied version."""
    if current is None:
        return True
    if current.was_applied(snapshot.version):
        return False
    if snapshot.version <= current.version:
        raise FailedPrecondition(
            f"{snapshot.version} is not newer than the applied version {current.version}",
            field="snapshot.version",
            reason="STALE_VERSION",
            metadata={"applied_version": str(current.version)},
        )
    return True


def delta_is_new(state: AccountState | None, delta: DeltaData) -> bool:
    """False for a delta delivered again; raises for one whose base is not the applied version."""
    applied = state.version if state is not None else 0
    if state is not None and state.was_applied(delta.version):
        return False
    if delta.base_version != applied or state is None:
        raise FailedPrecondition(
            f"{delta.base_version} is not the applied version {applied}; send a snapshot",
            field="delta.base_version",
            reason="BASE_VERSION_MISMATCH",
            metadata={"applied_version": str(applied)},
        )
    return True


def after_snapshot(
    current: AccountState | None, handling: Handling, snapshot: SnapshotData, floors: dict[str, int] | None
) -> AccountState:
    """The account's state once `snapshot` replaced its collections; `current` is left as it was.
    Its `arrivals` hold the customers' items the snapshot brought."""
    base = current or AccountState.empty(snapshot.account_id)
    state = _built(base, current, handling, snapshot, snapshot.batches)
    # Retention keeps out what is older than its floor and not held already. Built first
    # with everything, the state's oldest items tell at once whether anything could be;
    # only then is every entity checked, and the state built again without what is out.
    if floors and state.reaches(floors):
        admitted = [base.admitted(batch, floors) for batch in snapshot.batches]
        if any(kept is not batch for kept, batch in zip(admitted, snapshot.batches, strict=True)):
            state = _built(base, current, handling, snapshot, admitted)
    state.presence = base.presence
    state.applied_versions = base.applied_versions
    state.note_applied(snapshot.version)
    return state


def _built(
    base: AccountState,
    current: AccountState | None,
    handling: Handling,
    snapshot: SnapshotData,
    batches: Sequence[sync_pb2.EntityBatch],
) -> AccountState:
    replaced = snapshot.collections or ALL_COLLECTIONS

    def pick(collection: sync_pb2.Collection.ValueType, fresh: dict[str, T], old: dict[str, T]) -> dict[str, T]:
        return fresh if collection in replaced else old

    account = snapshot.account if snapshot.account.ByteSize() else base.account
    return AccountState.build(
        account_id=snapshot.account_id,
        version=snapshot.version,
        account=account,
        contents=pick(sync_pb2.COLLECTION_CONTENTS, {c.content_id: c for b in batches for c in b.contents}, base.contents),
        comments=pick(sync_pb2.COLLECTION_COMMENTS, {c.comment_id: c for b in batches for c in b.comments}, base.comments),
        conversations=pick(
            sync_pb2.COLLECTION_CONVERSATIONS,
            {c.conversation_id: c for b in batches for c in b.conversations},
            base.conversations,
        ),
        messages=pick(sync_pb2.COLLECTION_MESSAGES, {m.message_id: m for b in batches for m in b.messages}, base.messages),
        notifications=pick(
            sync_pb2.COLLECTION_NOTIFICATIONS,
            {n.notification_id: n for b in batches for n in b.notifications},
            base.notifications,
        ),
        handling=handling,
        previous=current,
    )


def apply_delta(state: AccountState, delta: DeltaData, floors: dict[str, int] | None) -> None:
    """Applies a delta to `state` in place; its `arrivals` hold the customers' new items."""
    state.apply_changes(delta.version, delta.account, delta.upserts, delta.removals, floors)
    state.note_applied(delta.version)
