"""Reading the journal back, strictly: a row whose CRC does not match, a part missing
from a checkpoint, or a file SQLite cannot read ends what is trusted (journal.py)."""

from __future__ import annotations

import sqlite3
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from imsync.journal.v1 import journal_pb2 as jpb
from imsync.v1 import entities_pb2 as e
from imsync.v1 import fleet_pb2 as fl
from imsync.v1 import sync_pb2
from services.master.memory.records import FORMAT, _crc

T = TypeVar("T")

# ------------------------------------------------------------------ recovery


@dataclass
class Checkpoint:
    seq: int
    head: jpb.AccountCheckpoint
    parts: list[sync_pb2.EntityBatch]
    # The bytes each part was parsed from, in step with parts (the messages are read off
    # them, intake.py); empty once the account is restored.
    bodies: list[bytes] = field(default_factory=list)


@dataclass
class Recovered:
    """What a journal file held that can be trusted, and what could not."""

    epoch: int = 1
    next_seq: int = 1
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    # (seq, account_id, record, the bytes it was parsed from) of the valid prefix, in order.
    records: list[tuple[int, str, jpb.Record, bytes]] = field(default_factory=list)
    commands: list[jpb.CommandEntry] = field(default_factory=list)
    templates: list[e.Template] = field(default_factory=list)
    fleet: list[fl.ManagedAccount] = field(default_factory=list)
    # Account -> its sealed session.
    sessions: dict[str, bytes] = field(default_factory=dict)
    # What was dropped, one line each; empty when the file was whole.
    problems: list[str] = field(default_factory=list)
    # Bytes of journal rows and of checkpoints per account, to schedule compaction.
    journal_bytes: dict[str, int] = field(default_factory=dict)
    checkpoint_bytes: dict[str, int] = field(default_factory=dict)


def _rows(connection: sqlite3.Connection, sql: str, problems: list[str], what: str) -> list[Any]:
    """The rows SQLite can read; a damaged file ends the list and is noted."""
    rows: list[Any] = []
    try:
        for row in connection.execute(sql):
            rows.append(row)
    except sqlite3.DatabaseError as error:
        problems.append(f"{what}: the file is unreadable after {len(rows)} rows ({error}); dropped the rest")
    return rows


def _bodies(
    connection: sqlite3.Connection,
    table: str,
    key: str,
    parse: Callable[[bytes], T],
    problems: list[str],
    damaged: str,
    *,
    keyed: bool = False,
) -> list[Any]:
    """The parsed bodies of a table of (key, crc, body) rows; a row whose body is damaged is
    dropped and noted; a table a journal of an earlier version lacks holds nothing."""
    if not connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
        return []
    found: list[Any] = []
    for name, crc, body in _rows(connection, f"SELECT {key}, crc, body FROM {table}", problems, table):
        try:
            if _crc(body) != crc:
                raise ValueError("crc")
            found.append((name, parse(body)) if keyed else parse(body))
        except Exception:
            problems.append(damaged.format(name))
    return found


def wal_damage(wal: Path) -> str | None:
    """What SQLite would drop silently from a damaged write-ahead log, said aloud.

    SQLite replays the -wal file up to the first frame whose checksum fails. A crash can
    leave a torn, uncommitted tail there, which is fine (nothing in it was acknowledged);
    but a *commit* frame of the same log after a failed checksum means committed,
    acknowledged work is being dropped. Format: sqlite.org/fileformat2.html#walformat.
    """
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) < 32:
        return None
    magic, _, page_size, _, salt1, salt2, check1, check2 = struct.unpack(">8I", data[:32])
    if magic not in (0x377F0682, 0x377F0683):
        return "the write-ahead log has no valid header"
    order = ">" if magic & 1 else "<"

    def checksum(chunk: bytes, s0: int, s1: int) -> tuple[int, int]:
        words = struct.unpack(f"{order}{len(chunk) // 4}I", chunk)
        for index in range(0, len(words), 2):
            s0 = (s0 + words[index] + s1) & 0xFFFFFFFF
            s1 = (s1 + words[index + 1] + s0) & 0xFFFFFFFF
        return s0, s1

    s0, s1 = checksum(data[:24], 0, 0)
    if (s0, s1) != (check1, check2):
        return "the write-ahead log's header is damaged"
    frame = 24 + page_size
    broken_at = None
    for offset in range(32, len(data) - frame + 1, frame):
        head = data[offset : offset + 24]
        _, commit, frame_salt1, frame_salt2, frame_check1, frame_check2 = struct.unpack(">6I", head)
        if (frame_salt1, frame_salt2) != (salt1, salt2):
            break  # left over from an earlier generation of the log: its end
        index = (offset - 32) // frame
        if broken_at is None:
            s0, s1 = checksum(head[:8] + data[offset + 24 : offset + frame], s0, s1)
            if (s0, s1) != (frame_check1, frame_check2):
                broken_at = index
        elif commit:
            return f"the write-ahead log is damaged at frame {broken_at}; committed frames after it (up to {index}) are dropped"
    return None


def read_journal(path: Path) -> Recovered:
    """Reads a journal file as far as it can be trusted."""
    recovered = Recovered()
    if not path.exists():
        return recovered
    problems = recovered.problems
    # Before SQLite opens the file and replays (and then discards) its log.
    damage = wal_damage(Path(f"{path}-wal"))
    if damage is not None:
        problems.append(damage)
    try:
        # Opening also takes in the -wal file: what was committed before a crash.
        connection = sqlite3.connect(path)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as error:
        problems.append(f"the journal file cannot be opened ({error}); starting empty")
        recovered.epoch = int(time.time())
        return recovered
    try:
        meta: dict[str, str] = dict(_rows(connection, "SELECT key, value FROM meta", problems, "meta"))
        # Without a readable epoch, one no earlier run can have used (event ids carry it).
        recovered.epoch = int(meta["epoch"]) + 1 if "epoch" in meta else int(time.time())
        if meta.get("format", FORMAT) != FORMAT:
            raise SystemExit(f"{path}: journal format {meta.get('format')}, this master reads {FORMAT}")
        top = 0

        # Checkpoints: a checkpoint is whole or it is dropped.
        heads: dict[str, tuple[int, jpb.AccountCheckpoint]] = {}
        parts: dict[str, dict[int, tuple[sync_pb2.EntityBatch, bytes]]] = {}
        bad: set[str] = set()
        rows = _rows(
            connection,
            "SELECT account_id, part, seq, crc, body FROM checkpoints ORDER BY account_id, part",
            problems,
            "checkpoints",
        )
        for account_id, part, seq, crc, body in rows:
            top = max(top, seq)
            recovered.checkpoint_bytes[account_id] = recovered.checkpoint_bytes.get(account_id, 0) + len(body)
            if _crc(body) != crc:
                bad.add(account_id)
                continue
            try:
                if part == 0:
                    heads[account_id] = (seq, jpb.AccountCheckpoint.FromString(body))
                else:
                    parts.setdefault(account_id, {})[part] = (sync_pb2.EntityBatch.FromString(body), body)
            except Exception:  # a body that passed its CRC but does not parse
                bad.add(account_id)
        for account_id, (seq, head) in heads.items():
            have = parts.get(account_id, {})
            if account_id in bad or sorted(have) != list(range(1, head.parts + 1)):
                bad.add(account_id)
                continue
            numbers = range(1, head.parts + 1)
            recovered.checkpoints[account_id] = Checkpoint(
                seq, head, [have[i][0] for i in numbers], [have[i][1] for i in numbers]
            )
        for account_id in sorted(bad | (parts.keys() - heads.keys())):
            problems.append(f"checkpoint of account {account_id!r} is damaged; dropped it")

        # The journal: the valid prefix, up to the first row that fails its check.
        rows = _rows(connection, "SELECT seq, account_id, crc, body FROM journal ORDER BY seq", problems, "journal")
        for position, (seq, account_id, crc, body) in enumerate(rows):
            record = None
            if _crc(body) == crc:
                try:
                    record = jpb.Record.FromString(body)
                except Exception:
                    record = None
            if record is None:
                problems.append(
                    f"journal record {seq} is damaged; dropped it and the {len(rows) - position - 1} records after it"
                )
                top = max(top, int(rows[-1][0]))
                break
            top = max(top, seq)
            recovered.records.append((seq, account_id, record, body))
            recovered.journal_bytes[account_id] = recovered.journal_bytes.get(account_id, 0) + len(body)

        recovered.commands = _bodies(
            connection,
            "commands",
            "request_id",
            jpb.CommandEntry.FromString,
            problems,
            "reply {!r} is damaged; dropped it",
        )
        recovered.templates = _bodies(
            connection,
            "templates",
            "template_id",
            e.Template.FromString,
            problems,
            "template {!r} is damaged; dropped it",
        )
        recovered.fleet = _bodies(
            connection,
            "fleet",
            "account_id",
            fl.ManagedAccount.FromString,
            problems,
            "managed account {!r} is damaged; dropped it",
        )
        recovered.sessions = dict(
            _bodies(
                connection,
                "sessions",
                "account_id",
                lambda body: body,
                problems,
                "the session of account {!r} is damaged; dropped it (the account logs in again)",
                keyed=True,
            )
        )
        recovered.next_seq = top + 1
    finally:
        connection.close()
    return recovered


def move_aside(path: Path) -> Path:
    """Moves a damaged journal (and its -wal and -shm files) out of the way, for a person to inspect."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{target}{suffix}"))
    return target
