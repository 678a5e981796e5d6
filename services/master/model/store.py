"""The store interface: what the master's services need, whatever the backend.

The store holds the newest crawled state of every account and the master's own state
(read marks, pins, mutes) beside it. It knows nothing of gRPC: it takes and returns
entity protos and plain values, and raises the errors of errors.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar, cast

from imsync.journal.v1 import journal_pb2 as jpb
from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import fleet_pb2 as fl
from imsync.v1 import sync_pb2
from imsync.v1 import unified_messages_pb2 as u
from services.master.model import search, threads
from services.master.model.account_base import Presence
from services.master.model.errors import InvalidArgument
from services.master.model.intake import Intake, Wire
from services.master.model.retention import Retention

if TYPE_CHECKING:
    from services.master.model.json_views import JsonViews

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# Keys a page of a list looks at after its cursor, at most, as a search's candidates
# (search.SCAN): a filter few items pass (`is_read=true` on an inbox nobody read) answers
# a short page, empty even, with has_more and the cursor at the last key looked at, rather
# than walking the whole account with the event loop held (AIP-158 lets a page hold fewer
# items than asked). The clients follow has_more.
SCAN = search.SCAN


def page_size(count: int) -> int:
    """The page size for a requested `count`: 0 means the default; above the maximum is clamped."""
    if count < 0:
        raise InvalidArgument("must not be negative", field="count")
    if count == 0:
        return DEFAULT_PAGE_SIZE
    return min(count, MAX_PAGE_SIZE)


class Page(NamedTuple, Generic[T]):
    """A page of a list read (a tuple: made on every read, and cheaper so than a frozen
    dataclass)."""

    items: list[T]
    cursor: str
    has_more: bool
    # The items as JSON, when asked for (`as_json`) of a store that can make it without
    # the views (json_views.py); `items` is then empty.
    encoded: list[bytes] | None = None

    def as_encoded(self, encoded: bool = True) -> Page[Any]:
        """This page with its items (JSON bytes) moved to `encoded`; itself when not `encoded`."""
        return Page([], self.cursor, self.has_more, cast(list[bytes], self.items)) if encoded else self


@dataclass(frozen=True)
class SnapshotData:
    """A complete, validated snapshot of an account, assembled from its chunks."""

    account_id: str
    version: int
    # The collections replaced; empty means all of them.
    collections: frozenset[sync_pb2.Collection.ValueType]
    account: e.Account
    # One batch, or the batches of its chunks as they came (never copied into one). The
    # memory store keeps the messages and comments where they are (entity_table.py): once
    # applied, the batches must not be changed.
    entities: sync_pb2.EntityBatch | Sequence[sync_pb2.EntityBatch]
    # The writer's lease epoch, for a store that fences stale writers itself (Redis); 0: none.
    lease_epoch: int = 0
    # The entities as they were checked in, chunk by chunk; None: taken in from `entities`.
    intake: Intake | None = None
    # Where each batch was parsed from, in step with `batches`, if at hand (intake.py).
    wires: Sequence[Wire] | None = None

    @property
    def batches(self) -> Sequence[sync_pb2.EntityBatch]:
        return (self.entities,) if isinstance(self.entities, sync_pb2.EntityBatch) else self.entities


@dataclass(frozen=True)
class DeltaData:
    """Validated changes to an account, from base_version to version."""

    account_id: str
    base_version: int
    version: int
    # None keeps the account's profile.
    account: e.Account | None
    upserts: sync_pb2.EntityBatch
    removals: sync_pb2.Removals
    # The writer's lease epoch, for a store that fences stale writers itself (Redis); 0: none.
    lease_epoch: int = 0


@dataclass(frozen=True)
class UnifiedStats:
    unread_comments: int
    unread_discussions: int
    unread_direct_messages: int
    unread_notifications: int = 0

    @property
    def total_unread(self) -> int:
        """What customers wrote and nobody read (notifications are counted apart)."""
        return self.unread_comments + self.unread_discussions + self.unread_direct_messages


class Store(Protocol):
    # What the store keeps and for how long; None keeps everything.
    retention: Retention | None
    # Hears of new messages and comments, read marks and account status changes.
    on_event: Callable[[ev.Event], None] | None

    # --- durability ---
    def persisted(self) -> Awaitable[object] | None:
        """Done once every change made so far is durable (and, for the memory store, known to
        every gateway keeping answers: coherence.py); None when it already is. Whatever is
        told of a change waits for it."""
        ...

    async def enforce_retention(self, *, budget: int = 100_000) -> int:
        """Drops what outlived its time to live, then the oldest read items while over the
        entity bound; at most `budget` entities a call. Returns how many."""
        ...

    async def entity_count(self) -> int:
        """Entities held in all accounts."""
        ...

    # --- sync ---
    async def account_versions(self, account_ids: Iterable[str]) -> dict[str, int]: ...

    async def known_accounts(self, account_ids: Iterable[str]) -> set[str]:
        """Those of these accounts the store holds."""
        ...

    async def account_count(self) -> int:
        """How many accounts the store holds."""
        ...

    async def apply_snapshot(self, snapshot: SnapshotData) -> bool:
        """Applies a snapshot atomically; False (a no-op) for a version not newer than the applied one."""
        ...

    async def apply_delta(self, delta: DeltaData) -> bool:
        """Applies a delta atomically; False (a no-op) for a version already applied.

        Raises FailedPrecondition (reason BASE_VERSION_MISMATCH) when its base is not the
        applied version.
        """
        ...

    async def report_status(self, report: sync_pb2.AccountStatusReport) -> None:
        """Keeps what a worker says of an account's health; shown in the account's view."""
        ...

    async def set_presence(self, account_id: str, worker_id: str, online: bool) -> None:
        """Records which worker holds the account and whether its stream is connected."""
        ...

    async def get_presence(self, account_id: str) -> Presence:
        """The account's owning worker and its last status report, login challenge
        included (NotFound for an account the master has never heard of)."""
        ...

    # --- accounts ---
    async def list_accounts(
        self,
        *,
        status: int,
        platform: int,
        cursor: str,
        count: int,
        only: Collection[str] | None = None,
    ) -> Page[e.Account]:
        """Accounts in id order; with `only`, just those (the accounts a key may use)."""
        ...

    async def accounts_holding(self, kind: str, entity_id: str) -> list[str]:
        """The accounts holding an entity of a kind ("conversation", "message", "content", "comment")."""
        ...

    async def get_account(self, account_id: str) -> e.Account: ...

    # --- conversations ---
    async def list_conversations(
        self,
        account_id: str,
        *,
        status: int,
        is_pinned: bool | None,
        is_muted: bool | None,
        cursor: str,
        count: int,
        assignee: str | None = None,
        thread_state: int = 0,
        as_json: JsonViews | None = None,
    ) -> Page[e.Conversation]: ...

    async def get_conversation(self, account_id: str, conversation_id: str) -> e.Conversation: ...

    async def mark_conversation_read(
        self, account_id: str, conversation_id: str, now_ns: int
    ) -> tuple[int, e.Conversation]: ...

    async def set_pinned(self, account_id: str, conversation_id: str, pinned: bool) -> e.Conversation: ...

    async def set_muted(self, account_id: str, conversation_id: str, muted: bool) -> e.Conversation: ...

    # --- the team's handling of conversations (threads.py) ---
    async def handle_conversation(
        self, account_id: str, conversation_id: str, change: threads.Change, now_ns: int
    ) -> e.Conversation:
        """Applies `change` to the conversation's handling, atomically (a claim racing
        another sees it); journaled and announced when it changes anything."""
        ...

    async def conversation_notes(self, account_id: str, conversation_id: str) -> list[e.Note]: ...

    async def handle_comment_thread(
        self, account_id: str, comment_id: str, change: threads.Change, now_ns: int
    ) -> tuple[str, str]:
        """Applies `change` to the handling of the thread a comment (top-level or a reply)
        is in, as handle_conversation; returns the account and the thread's top-level
        comment id."""
        ...

    async def thread_handlings(self, account_id: str, thread_keys: Iterable[str]) -> dict[str, jpb.ThreadHandling]:
        """The handlings of an account's threads, by thread key (threads.py), of those
        that have one."""
        ...

    async def snoozed(self) -> list[tuple[int, str, str]]:
        """(until ns, account id, thread key) of every snoozed thread."""
        ...

    # --- the team's quick replies (templates.py) ---
    async def list_templates(self) -> list[e.Template]: ...

    async def save_template(self, template: e.Template, *, create: bool) -> e.Template:
        """Keeps a template whole: a new one (`create`: its id new), or in place of the one
        with its id (NotFound otherwise). Names are unique (AlreadyExists, field name)."""
        ...

    async def delete_template(self, template_id: str) -> None: ...

    # --- the fleet's accounts and their sessions (fleet.py) ---
    async def list_managed_accounts(self) -> list[fl.ManagedAccount]:
        """Every managed account, as kept (the password included), by id."""
        ...

    async def save_managed_account(self, account: fl.ManagedAccount, *, create: bool) -> fl.ManagedAccount:
        """Keeps an account whole: a new one (`create`: AlreadyExists when its id is
        taken, ResourceExhausted past fleet.MAX_ACCOUNTS), or in place of the one with its
        id (NotFound otherwise)."""
        ...

    async def delete_managed_account(self, account_id: str) -> None:
        """Forgets a managed account and its session (NotFound when there is none)."""
        ...

    async def session_state(self, account_id: str) -> bytes | None:
        """The account's sealed session (auth/session_keys.py), if one is kept."""
        ...

    async def save_session_state(self, account_id: str, sealed: bytes) -> None:
        """Keeps the account's sealed session in place of the last (NotFound for an account
        that is not managed)."""
        ...

    async def sessions_kept(self, account_ids: Sequence[str]) -> set[str]:
        """Those of the accounts whose session is kept."""
        ...

    # --- search (search.py) ---
    async def search(
        self, account_id: str, wanted: str, kinds: Collection[str], after: bytes, count: int
    ) -> tuple[list[search.Hit], bytes]:
        """The first `count` items of the account holding `wanted` (check_query's), of
        `kinds` ("m", "c", "w"), newest first after the key `after`; and the key to go on
        after (b"" when nothing follows)."""
        ...

    async def announce(self, event: ev.Event) -> None:
        """Announces an event no stored change carries (an agent's presence)."""
        ...

    # --- messages ---
    async def list_messages(
        self,
        account_id: str,
        *,
        conversation_id: str,
        sender_id: str,
        receiver_id: str,
        status: int,
        message_type: int,
        since_ns: int | None,
        cursor: str,
        count: int,
        as_json: JsonViews | None = None,
    ) -> Page[e.Message]: ...

    async def get_message(self, account_id: str, message_id: str) -> e.Message: ...

    async def mark_message_read(self, account_id: str, message_id: str, now_ns: int) -> e.Message: ...

    # --- contents ---
    async def list_contents(
        self,
        account_id: str,
        *,
        content_type: int,
        is_new: bool | None,
        cursor: str,
        count: int,
    ) -> Page[e.Content]: ...

    async def get_content(self, account_id: str, content_id: str) -> e.Content: ...

    async def mark_content_read(self, account_id: str, content_id: str, now_ns: int) -> tuple[int, e.Content]: ...

    # --- discussions ---
    async def list_discussions(
        self,
        account_id: str,
        *,
        content_id: str,
        parent_comment_id: str,
        is_read: bool | None,
        is_new: bool | None,
        cursor: str,
        count: int,
    ) -> Page[e.Comment]: ...

    async def get_discussion(self, account_id: str, comment_id: str) -> e.Comment: ...

    async def mark_discussion_read(self, account_id: str, comment_id: str, now_ns: int) -> e.Comment: ...

    # --- unified inbox ---
    async def list_unified(
        self,
        account_id: str,
        *,
        types: Collection[int],
        is_read: bool | None,
        is_new: bool | None,
        cursor: str,
        count: int,
        since_ns: int | None = None,
        as_json: JsonViews | None = None,
    ) -> Page[u.UnifiedMessage]: ...

    async def unified_stats(self, account_id: str) -> UnifiedStats: ...

    async def get_unified(self, account_id: str, item_id: str) -> u.UnifiedMessage: ...

    async def mark_unified_read(self, account_id: str, item_ids: Sequence[str], now_ns: int) -> int: ...
