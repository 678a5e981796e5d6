"""How an account's state changes with a snapshot or a delta: one definition for every
store backend, so that both apply exactly the same rules (versions, what is new, what
retention keeps out)."""

from __future__ import annotations

from imsync.v1 import sync_pb2
from services.master.model.account_base import Handling
from services.master.model.account_state import AccountState
from services.master.model.errors import FailedPrecondition
from services.master.model.intake import Intake
from services.master.model.store import DeltaData, SnapshotData

_NAMES = {
    sync_pb2.COLLECTION_CONTENTS: "contents",
    sync_pb2.COLLECTION_COMMENTS: "comments",
    sync_pb2.COLLECTION_CONVERSATIONS: "conversations",
    sync_pb2.COLLECTION_MESSAGES: "messages",
    sync_pb2.COLLECTION_NOTIFICATIONS: "notifications",
}
ALL_COLLECTIONS = frozenset(_NAMES)


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
    intake = snapshot.intake or Intake.of(snapshot.account_id, snapshot.batches, wires=snapshot.wires)
    state = _built(base, current, handling, snapshot, intake)
    # Retention keeps out what is older than its floor and not held already. Built first
    # with everything, the state's oldest items tell at once whether anything could be;
    # only then is every entity checked, and the state built again without what is out.
    if floors and state.reaches(floors):
        admitted = [base.admitted(batch, floors) for batch in snapshot.batches]
        if any(kept is not batch for kept, batch in zip(admitted, snapshot.batches, strict=True)):
            state = _built(base, current, handling, snapshot, Intake.of(snapshot.account_id, admitted))
    state.presence = base.presence
    state.applied_versions = base.applied_versions
    state.note_applied(snapshot.version)
    state.reopen_threads()
    return state


def _built(
    base: AccountState,
    current: AccountState | None,
    handling: Handling,
    snapshot: SnapshotData,
    intake: Intake,
) -> AccountState:
    replaced = snapshot.collections or ALL_COLLECTIONS
    for collection, name in _NAMES.items():
        if collection not in replaced:
            intake.replace(name, getattr(base, name).values())
    account = snapshot.account if snapshot.account.ByteSize() else base.account
    return AccountState.build(
        version=snapshot.version, account=account, intake=intake, handling=handling, previous=current
    )


def apply_delta(state: AccountState, delta: DeltaData, floors: dict[str, int] | None) -> None:
    """Applies a delta to `state` in place; its `arrivals` hold the customers' new items."""
    state.apply_changes(delta.version, delta.account, delta.upserts, delta.removals, floors)
    state.note_applied(delta.version)
    state.reopen_threads()
