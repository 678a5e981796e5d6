"""The team's handling of a thread: who owns it, open, done or snoozed, marked unread,
and the team's notes. A thread is a conversation or a top-level comment with its replies.
One record per thread (journal.v1.ThreadHandling), kept whole by either backend and changed
only through `Change`s made here, so that the memory and the Redis store agree on every rule.

Both backends keep an account's records in one map by *thread key*: a conversation's id,
or COMMENT_THREAD and then the top-level comment's id (no platform id starts with a NUL).

A thread nobody handled yet has no record: it is open, unassigned, with no notes.
"""

from __future__ import annotations

from collections.abc import Callable

from imsync.journal.v1 import journal_pb2 as jpb
from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from services.master.model.errors import FailedPrecondition, InvalidArgument
from services.master.model.written import check_written

MAX_NOTE = 2000
# A conversation keeps its newest notes: a record stays a few hundred kilobytes at most.
MAX_NOTES = 200
MAX_SNOOZE_NS = 366 * 24 * 3600 * 10**9
_SECOND = 10**9

OPEN, DONE, SNOOZED = e.THREAD_STATE_OPEN, e.THREAD_STATE_DONE, e.THREAD_STATE_SNOOZED
COMMENT_THREAD = "\0comment:"


def comment_thread(root_id: str) -> str:
    """The thread key of a top-level comment's thread."""
    return COMMENT_THREAD + root_id


def root_of(thread_key: str) -> str | None:
    """The top-level comment of a comment thread's key; None for a conversation's."""
    return thread_key[len(COMMENT_THREAD) :] if thread_key.startswith(COMMENT_THREAD) else None


def thread_of(comment: e.Comment) -> str:
    """The key of the thread a comment is in."""
    return comment_thread(comment.parent_comment_id or comment.comment_id)


# Changes a handling in place, given the time (ns); raises a StoreError to refuse.
Change = Callable[[jpb.ThreadHandling, int], None]


def _stamp(handling: jpb.ThreadHandling, agent: str, now_ns: int) -> None:
    handling.updated_by = agent
    handling.update_time.FromNanoseconds(now_ns)


def assign(assignee: str, agent: str) -> Change:
    def change(handling: jpb.ThreadHandling, now_ns: int) -> None:
        handling.assignee = assignee
        _stamp(handling, agent, now_ns)

    return change


def claim(agent: str) -> Change:
    """Takes the conversation for `agent`, unless another agent owns it."""

    def change(handling: jpb.ThreadHandling, now_ns: int) -> None:
        if handling.assignee and handling.assignee != agent:
            raise FailedPrecondition(
                f"{handling.assignee} owns this conversation",
                reason="CLAIMED",
                metadata={"assignee": handling.assignee},
            )
        handling.assignee = agent
        _stamp(handling, agent, now_ns)

    return change


def set_state(state: e.ThreadState.ValueType, snoozed_until_ns: int, agent: str) -> Change:
    def change(handling: jpb.ThreadHandling, now_ns: int) -> None:
        if state == SNOOZED:
            if snoozed_until_ns <= now_ns:
                raise InvalidArgument("must be in the future", field="snoozed_until")
            if snoozed_until_ns - now_ns > MAX_SNOOZE_NS:
                raise InvalidArgument("at most a year ahead", field="snoozed_until")
            handling.snoozed_until.FromNanoseconds(snoozed_until_ns)
        else:
            handling.ClearField("snoozed_until")
        handling.state = state
        handling.marked_unread = False
        _stamp(handling, agent, now_ns)

    return change


def mark_unread(agent: str) -> Change:
    def change(handling: jpb.ThreadHandling, now_ns: int) -> None:
        handling.marked_unread = True
        _stamp(handling, agent, now_ns)

    return change


def add_note(note: e.Note) -> Change:
    """Adds `note` (its id, agent and time chosen by the caller); the oldest go past MAX_NOTES."""

    def change(handling: jpb.ThreadHandling, now_ns: int) -> None:
        handling.notes.append(note)
        if len(handling.notes) > MAX_NOTES:
            del handling.notes[: len(handling.notes) - MAX_NOTES]

    return change


def wake(handling: jpb.ThreadHandling, now_ns: int) -> None:
    """A snooze whose time passed: the conversation is open again, and shown unread."""
    if handling.state == SNOOZED and handling.snoozed_until.ToNanoseconds() <= now_ns:
        handling.state = OPEN
        handling.ClearField("snoozed_until")
        handling.marked_unread = True
        _stamp(handling, "", now_ns)


def reopened(handling: jpb.ThreadHandling, message_ns: int) -> jpb.ThreadHandling | None:
    """The handling once a customer's message written at `message_ns` arrived: open again if
    it was done or snoozed before the message was written; None when that changes nothing.
    (A message the customer wrote before the state was set does not: it was read first.)
    Stamped with the message's time (not the clock), so that a journal replayed gives the same."""
    # Platforms give times in whole seconds: a message of the second the state was set
    # may have been written after it, and opens it again.
    set_in = handling.update_time.ToNanoseconds() // _SECOND * _SECOND
    if handling.state not in (DONE, SNOOZED) or message_ns < set_in:
        return None
    after = jpb.ThreadHandling()
    after.CopyFrom(handling)
    after.state = OPEN
    after.ClearField("snoozed_until")
    _stamp(after, "", message_ns)
    return after


def read(handling: jpb.ThreadHandling, now_ns: int) -> None:
    """Someone read the conversation: it is no longer marked unread (a snooze that ran out
    is over)."""
    wake(handling, now_ns)
    handling.marked_unread = False


def apply(handling: jpb.ThreadHandling | None, change: Change, now_ns: int) -> tuple[jpb.ThreadHandling, bool]:
    """The handling after `change`, and whether it differs (a change that changes nothing
    is neither journaled nor announced)."""
    before = handling or jpb.ThreadHandling()
    after = jpb.ThreadHandling()
    after.CopyFrom(before)
    change(after, now_ns)
    return after, _meaningful(before) != _meaningful(after)


def _meaningful(handling: jpb.ThreadHandling) -> bytes:
    """The handling without who changed it last and when: what a change must alter to count."""
    copy = jpb.ThreadHandling()
    copy.CopyFrom(handling)
    copy.ClearField("updated_by")
    copy.ClearField("update_time")
    return copy.SerializeToString(deterministic=True)


def view(conversation: e.Conversation | e.Thread, handling: jpb.ThreadHandling | None, now_ns: int) -> None:
    """Fills a conversation's (or a thread's) master-owned handling fields, as they are at
    `now_ns`: a snooze whose time passed is open and shown unread (as `wake` records it soon
    after). A done or snoozed one the customer wrote in is open already (`reopened`)."""
    if handling is None:
        # Nobody handled it: whatever a worker sent in these fields is not shown.
        conversation.assignee, conversation.note_count, conversation.is_marked_unread = "", 0, False
        conversation.ClearField("snoozed_until")
        conversation.thread_state = OPEN
        return
    conversation.assignee = handling.assignee
    conversation.note_count = len(handling.notes)
    state = handling.state or OPEN
    marked = handling.marked_unread
    if state == SNOOZED and handling.snoozed_until.ToNanoseconds() <= now_ns:
        state, marked = OPEN, True
    conversation.thread_state = state
    conversation.is_marked_unread = marked
    if state == SNOOZED:
        conversation.snoozed_until.CopyFrom(handling.snoozed_until)
    else:
        conversation.ClearField("snoozed_until")


def check_note(text: str) -> str:
    return check_written(text, "text", MAX_NOTE)


def event_of(account_id: str, thread_key: str, handling: jpb.ThreadHandling) -> ev.Event:
    """The event announcing a change: the thread's ids and its handling as recorded (a
    client wanting the rest, or the state as it is now, reads the thread): a Conversation
    for a conversation (EVENT_TYPE_CONVERSATION_HANDLED), a Thread for a comment thread
    (EVENT_TYPE_THREAD_HANDLED)."""
    root = root_of(thread_key)
    if root is None:
        event = ev.Event(type=ev.EVENT_TYPE_CONVERSATION_HANDLED, account_id=account_id)
        event.conversation.conversation_id = thread_key
        payload: e.Conversation | e.Thread = event.conversation
    else:
        event = ev.Event(type=ev.EVENT_TYPE_THREAD_HANDLED, account_id=account_id)
        event.thread.kind = e.THREAD_KIND_COMMENT
        event.thread.thread_id = root
        payload = event.thread
    payload.account_id = account_id
    payload.assignee = handling.assignee
    payload.thread_state = handling.state or OPEN
    payload.is_marked_unread = handling.marked_unread
    payload.note_count = len(handling.notes)
    if handling.state == SNOOZED:
        payload.snoozed_until.CopyFrom(handling.snoozed_until)
    event.create_time.CopyFrom(handling.update_time)
    return event


def snoozes(account_id: str, handlings: dict[str, jpb.ThreadHandling]) -> list[tuple[int, str, str]]:
    """(until ns, account id, thread key) of every snoozed thread."""
    return [
        (handling.snoozed_until.ToNanoseconds(), account_id, thread_key)
        for thread_key, handling in handlings.items()
        if handling.state == SNOOZED
    ]


def record(account_id: str, thread_key: str, handling: jpb.ThreadHandling) -> jpb.ThreadRecord:
    """The journal's record of a thread's handling."""
    root = root_of(thread_key)
    if root is None:
        return jpb.ThreadRecord(account_id=account_id, conversation_id=thread_key, handling=handling)
    return jpb.ThreadRecord(account_id=account_id, comment_id=root, handling=handling)


def key_of(record: jpb.ThreadRecord) -> str:
    """The thread key a journal record is of."""
    return comment_thread(record.comment_id) if record.comment_id else record.conversation_id
