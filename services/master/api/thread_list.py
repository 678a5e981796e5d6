"""The inbox by thread (UnifiedMessageService.ListUnifiedThreads): an account's conversations and comment
threads in one list, built on the store's own queries, so both backends answer alike.

A comment thread is a top-level comment and its replies; it stands where its newest comment
is. The comments are walked newest first, and a thread is taken at the comment that is its
newest (a thread met again further down is not taken twice). Conversations come from their
own order; the two are merged, pinned conversations first, then by newest item.

The cursor carries where each of the two lists stopped: the key of the last item of it this
page gave (or the store's own cursor once all it fetched was given). A page gives only what
sorts before the last item fetched of a list that has more, so nothing is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from imsync.journal.v1 import journal_pb2 as jpb
from imsync.v1 import entities_pb2 as e
from services.master.model import cursor as cursors
from services.master.model import filters, threads
from services.master.model.cursor import Newest, SortKey
from services.master.model.errors import NotFound
from services.master.model.keys import _last_activity_ns, comment_key, ns_of
from services.master.model.store import Store, page_size

CONVERSATION, COMMENT = e.THREAD_KIND_CONVERSATION, e.THREAD_KIND_COMMENT
KINDS = (CONVERSATION, COMMENT)
# Comments a page walks at most: a page of threads each with thousands of replies stops
# there, and says there is more.
SCAN_LIMIT = 2_000
# A comment thread's unread replies are counted up to this.
UNREAD_LIMIT = 100


@dataclass
class _Taken:
    thread: e.Thread
    order: SortKey  # its place in the merged list
    resume: str  # the cursor of its own list that resumes after it


@dataclass
class _Fetched:
    items: list[_Taken]
    cursor: str  # the store's cursor after what was fetched
    has_more: bool


def conversation_thread(conversation: e.Conversation) -> e.Thread:
    thread = e.Thread(
        account_id=conversation.account_id,
        kind=CONVERSATION,
        thread_id=conversation.conversation_id,
        customer=conversation.participant,
        latest_text=conversation.last_message.content,
        unread_count=conversation.unread_count,
        is_pinned=conversation.is_pinned,
        is_muted=conversation.is_muted,
        assignee=conversation.assignee,
        thread_state=conversation.thread_state,
        is_marked_unread=conversation.is_marked_unread,
        note_count=conversation.note_count,
    )
    thread.latest_time.FromNanoseconds(_last_activity_ns(conversation))
    if conversation.HasField("snoozed_until"):
        thread.snoozed_until.CopyFrom(conversation.snoozed_until)
    return thread


async def _newest(store: Store, account_id: str, root_id: str) -> tuple[e.Comment | None, e.Comment] | None:
    """A comment thread's top-level comment (None when not held: replies whose comment was
    not crawled, or is gone) and its newest comment; None when nothing of it is held (gone
    since the list was read)."""
    replies = await store.list_discussions(
        account_id, content_id="", parent_comment_id=root_id, is_read=None, is_new=None, cursor="", count=1
    )
    try:
        root: e.Comment | None = await store.get_discussion(account_id, root_id)
    except NotFound:
        root = None
    candidates = [c for c in (root, *replies.items) if c is not None]
    if not candidates:
        return None
    return root, min(candidates, key=lambda c: (-ns_of(c.created_at), Newest(c.comment_id)))


async def comment_thread(store: Store, account_id: str, root_id: str, now_ns: int) -> e.Thread:
    """A comment thread as it is now: its top-level comment (its author the customer), its
    newest comment, its unread count and the team's handling."""
    found = await _newest(store, account_id, root_id)
    if found is None:
        raise NotFound(f"comment {root_id!r} not found")
    root, newest = found
    thread_key = threads.comment_thread(root_id)
    handling = (await store.thread_handlings(account_id, [thread_key])).get(thread_key)
    return await _comment_thread(store, account_id, root_id, root, newest, handling, now_ns)


async def _comment_thread(
    store: Store,
    account_id: str,
    root_id: str,
    root: e.Comment | None,
    newest: e.Comment,
    handling: jpb.ThreadHandling | None,
    now_ns: int,
) -> e.Thread:
    unread = await store.list_discussions(
        account_id, content_id="", parent_comment_id=root_id, is_read=False, is_new=None, cursor="", count=UNREAD_LIMIT
    )
    thread = e.Thread(
        account_id=account_id,
        kind=COMMENT,
        thread_id=root_id,
        content_id=newest.content_id,
        customer=(root or newest).author,
        latest_item_id=comment_key(newest.comment_id),
        latest_text=newest.content,
        latest_author=newest.author,
        unread_count=min(len(unread.items) + (root is not None and not root.is_read), UNREAD_LIMIT),
    )
    thread.latest_time.CopyFrom(newest.created_at)
    threads.view(thread, handling, now_ns)
    return thread


async def _comment_threads(
    store: Store, account_id: str, cursor: str, count: int, wanted: Callable[[e.Thread], bool], now_ns: int
) -> _Fetched:
    """Up to `count` comment threads after `cursor` (a cursor of the account's comments).
    The handlings of a page's threads are read at once and filtered first, so that a
    filter (mine, done) passes over the threads it leaves out at the cost of that read;
    the threads that pass are built a few at once (on Redis, their reads overlap)."""
    taken: list[_Taken] = []
    seen: set[str] = set()
    scanned = 0
    while True:
        page = await store.list_discussions(
            account_id, content_id="", parent_comment_id="", is_read=None, is_new=None, cursor=cursor, count=100
        )
        fresh = [r for r in dict.fromkeys(c.parent_comment_id or c.comment_id for c in page.items) if r not in seen]
        handlings = await store.thread_handlings(account_id, [threads.comment_thread(r) for r in fresh])
        at = 0
        while at < len(page.items):
            chunk = page.items[at : at + max(count - len(taken), 8)]
            candidates = []
            for place, comment in enumerate(chunk, start=at):
                root_id = comment.parent_comment_id or comment.comment_id
                if root_id in seen:
                    continue
                seen.add(root_id)
                handling = handlings.get(threads.comment_thread(root_id))
                handled = e.Thread()
                threads.view(handled, handling, now_ns)
                if wanted(handled):
                    candidates.append((place, comment, root_id, handling))
            found = await asyncio.gather(*(_newest(store, account_id, c[2]) for c in candidates))
            # A thread stands at its newest comment: one met further down stood higher up.
            chosen = [
                (*candidate, *held)
                for candidate, held in zip(candidates, found, strict=True)
                if held is not None and held[1].comment_id == candidate[1].comment_id
            ]
            built = await asyncio.gather(
                *(_comment_thread(store, account_id, r, root, newest, h, now_ns) for _, _, r, h, root, newest in chosen)
            )
            for (place, comment, *_), thread in zip(chosen, built, strict=True):
                order = (1, -ns_of(comment.created_at), 1, Newest(comment.comment_id))
                resume = cursors.encode("discussions", (-ns_of(comment.created_at), comment.comment_id))
                taken.append(_Taken(thread, order, resume))
                if len(taken) == count:
                    more = place < len(page.items) - 1 or page.has_more
                    return _Fetched(taken, resume if more else page.cursor, more)
            at += len(chunk)
            scanned += len(chunk)
            if scanned >= SCAN_LIMIT and at < len(page.items):
                last = page.items[at - 1]
                resume = cursors.encode("discussions", (-ns_of(last.created_at), last.comment_id))
                return _Fetched(taken, resume, True)
        if not page.has_more:
            return _Fetched(taken, page.cursor, False)
        cursor = page.cursor
        if scanned >= SCAN_LIMIT:
            return _Fetched(taken, cursor, True)


def _conversation_order(thread: e.Thread) -> SortKey:
    return (0 if thread.is_pinned else 1, -ns_of(thread.latest_time), 0, thread.thread_id)


async def list_threads(
    store: Store,
    account_id: str,
    *,
    kinds: set[e.ThreadKind.ValueType],
    assignee: str | None,
    thread_state: int,
    cursor: str,
    count: int,
    now_ns: int,
) -> tuple[list[e.Thread], str, bool]:
    """A page of the account's threads (kinds: CONVERSATION, COMMENT), its cursor, and
    whether more follow."""
    count = page_size(count)
    parts = cursors.decode(cursor, "threads", (str, str, int, int))
    conversations_at, comments_at, conversations_open, comments_open = parts or ("", "", 1, 1)
    fetched: dict[e.ThreadKind.ValueType, _Fetched] = {}
    if CONVERSATION in kinds and conversations_open:
        page = await store.list_conversations(
            account_id,
            status=0,
            is_pinned=None,
            is_muted=None,
            cursor=str(conversations_at),
            count=count,
            assignee=assignee,
            thread_state=thread_state,
        )
        items = []
        for conversation in page.items:
            thread = conversation_thread(conversation)
            order = _conversation_order(thread)
            items.append(_Taken(thread, order, cursors.encode("conversations", (order[0], order[1], order[3]))))
        fetched[CONVERSATION] = _Fetched(items, page.cursor, page.has_more)
    if COMMENT in kinds and comments_open:
        wanted = filters.handling(assignee, thread_state)
        fetched[COMMENT] = await _comment_threads(store, account_id, str(comments_at), count, wanted, now_ns)

    # What sorts after the last item fetched of a list with more may come after an item
    # of that list not yet fetched: it waits for the next page.
    bounds = [(f.items[-1].order if f.items else None) for f in fetched.values() if f.has_more]
    merged = sorted((taken for f in fetched.values() for taken in f.items), key=lambda taken: taken.order)
    given = [t for t in merged if all(b is not None and t.order <= b for b in bounds)][:count]

    resume = {
        CONVERSATION: (str(conversations_at), int(conversations_open)),
        COMMENT: (str(comments_at), int(comments_open)),
    }
    for kind, f in fetched.items():
        mine = [t for t in given if t.thread.kind == kind]
        if len(mine) == len(f.items):
            resume[kind] = (f.cursor, int(f.has_more))
        else:
            resume[kind] = (mine[-1].resume if mine else resume[kind][0], 1)
    has_more = any(open_ for (kind, (_, open_)) in resume.items() if kind in kinds)
    next_cursor = cursors.encode(
        "threads", (resume[CONVERSATION][0], resume[COMMENT][0], resume[CONVERSATION][1], resume[COMMENT][1])
    )
    return [t.thread for t in given], next_cursor if has_more else "", has_more
