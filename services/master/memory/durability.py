"""A master's data directory: what it recovers at start, and how it keeps the journal small."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from imsync.journal.v1 import journal_pb2 as jpb
from services.master.memory.journal import Journal
from services.master.memory.records import FILE_NAME
from services.master.memory.recovery import move_aside, read_journal
from services.master.memory.store import MemoryStore
from services.master.model.commands import CommandBook, CommandRecord, CommandState, command_key, is_reply
from services.master.model.errors import StoreError

log = logging.getLogger(__name__)


@dataclass
class Recovery:
    """What a start over a data directory found."""

    journal: Journal
    accounts: int = 0
    entities: int = 0
    replies: int = 0
    records: int = 0
    seconds: float = 0.0
    # What could not be trusted and was dropped, one line each.
    problems: list[str] = field(default_factory=list)
    # Where the damaged file was moved, for a person to inspect.
    damaged_file: Path | None = None


def _command_entry(record: CommandRecord) -> bytes:
    entry = jpb.CommandEntry(command=record.command)
    if record.result is not None:
        entry.result.CopyFrom(record.result)
    entry.create_time.FromNanoseconds(int(record.created_at * 1e9))
    return entry.SerializeToString()


def _command_record(entry: jpb.CommandEntry) -> CommandRecord:
    result = entry.result if entry.HasField("result") else None
    return CommandRecord(
        entry.command, CommandState.of(result), result, created_at=entry.create_time.ToNanoseconds() / 1e9
    )


def open_data_dir(data_dir: Path, store: MemoryStore, book: CommandBook, *, synchronous: str = "FULL") -> Recovery:
    """Loads what the data directory holds into the store and the command book, then
    journals every later change there. A damaged journal is moved aside and the valid
    part of it written to a new one."""
    started = time.monotonic()
    path = data_dir / FILE_NAME
    found = read_journal(path)
    problems = list(found.problems)
    listener, store.on_event = store.on_event, None  # a replay announces nothing
    replayed = 0
    try:
        for checkpoint in found.checkpoints.values():
            store.restore(checkpoint)
            checkpoint.bodies = []  # read: no longer held
        for seq, account_id, record, body in found.records:
            restored = found.checkpoints.get(account_id)
            if restored is not None and seq <= restored.seq:
                continue
            try:
                store.replay(record, body)
                replayed += 1
            except StoreError as error:
                problems.append(
                    f"journal record {seq} of account {account_id!r} no longer applies ({error}); dropped it"
                )
        for entry in found.commands:
            book.restore(_command_record(entry))
        store.restore_templates(found.templates)
        store.restore_fleet(found.fleet, found.sessions)
    finally:
        store.on_event = listener

    damaged_file = None
    if problems:
        damaged_file = move_aside(path) if path.exists() else None
        journal = Journal.create(path, epoch=found.epoch, next_seq=1, synchronous=synchronous)
        # The recovered state goes to the new file before anything else does.
        for account_id in store.account_ids():
            journal.write_checkpoint(account_id, journal.last_seq, store.capture(account_id)())
        for command in filter(lambda record: is_reply(record.command), book.records()):
            journal.put_command(
                command_key(command.command.account_id, command.command.request_id), partial(_command_entry, command)
            )
        # And what the team keeps beside the accounts.
        for template in found.templates:
            journal.put_template(template.template_id, template.SerializeToString)
        for managed in found.fleet:
            journal.put_row("fleet", managed.account_id, managed.SerializeToString())
        for account_id, sealed in found.sessions.items():
            journal.put_row("sessions", account_id, sealed)
    else:
        journal = Journal.create(path, epoch=found.epoch, next_seq=found.next_seq, synchronous=synchronous)
        journal.bytes_since_checkpoint = dict(found.journal_bytes)
        journal.checkpoint_bytes = dict(found.checkpoint_bytes)
        journal.rekey_commands(
            [
                (command_key(record.command.account_id, record.command.request_id), partial(_command_entry, record))
                for record in book.records()
                if is_reply(record.command)
            ]
        )
    store.journal = journal
    book.subscribe(
        lambda command: (
            journal.put_command(
                command_key(command.command.account_id, command.command.request_id), partial(_command_entry, command)
            )
            if is_reply(command.command)
            else None
        )
    )
    book.on_forget = journal.forget_command

    recovery = Recovery(
        journal,
        accounts=len(store.account_ids()),
        entities=store.count_entities(),
        replies=len(found.commands),
        records=replayed,
        seconds=time.monotonic() - started,
        problems=problems,
        damaged_file=damaged_file,
    )
    for problem in problems:
        log.critical("journal %s: %s", path, problem)
    if problems:
        log.critical(
            "the journal was damaged: started from its valid part, moved the file to %s; "
            "the workers' resumption brings back the crawled state",
            damaged_file,
        )
    log.info(
        "recovered %d accounts, %d entities, %d replies and %d journal records from %s in %.2f s (epoch %d)",
        recovery.accounts,
        recovery.entities,
        recovery.replies,
        recovery.records,
        path,
        recovery.seconds,
        journal.epoch,
    )
    return recovery


async def compact(store: MemoryStore, journal: Journal, *, minimum_bytes: int) -> list[str]:
    """Checkpoints, one after another, the accounts whose journal rows outweigh their last
    checkpoint (and `minimum_bytes`); their rows are then deleted."""
    chosen = journal.needs_checkpoint(minimum_bytes)
    for account_id in chosen:
        if store.has_account(account_id):
            await journal.checkpoint(account_id, store.capture(account_id))
    return chosen


async def checkpoint_all(store: MemoryStore, journal: Journal) -> None:
    """Checkpoints every account that has journal rows (at a clean stop: a fast next start)."""
    for account_id in store.account_ids():
        # An account a worker only named holds nothing to remember: it comes back when named again.
        if journal.bytes_since_checkpoint.get(account_id, 1) and (
            store.holds_anything(account_id) or account_id in journal.bytes_since_checkpoint
        ):
            await journal.checkpoint(account_id, store.capture(account_id))
