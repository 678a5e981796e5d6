"""The memory store's journal: what the master acknowledged survives a crash.

One SQLite file in WAL mode under the data directory holds:

- `journal`: every change to an account, in the order the master applied it (snapshots,
  deltas, read marks, pins and mutes, evictions), each row with a CRC32 of its body;
- `checkpoints`: per account, its whole state at a journal position, in parts; a
  checkpoint replaces the account's journal rows up to that position (compaction);
- `commands`: the replies people sent and what became of them;
- `templates`: the team's quick replies, a row each;
- `fleet` and `sessions`: the managed accounts and their sealed sessions, a row each;
- `meta`: the format and the epoch, which grows at every start (event ids carry it).

Writes happen on one thread. The event loop appends and goes on; the thread commits
whatever has gathered since its last commit in one transaction (group commit, fsync'd:
`synchronous=FULL`) and then resolves the futures of everything it covered. The master
answers an Ack, a mark-read or a reply only once the future of its change is resolved,
and publishes an event only once what it reports is on disk.

Reading back is strict: a row whose CRC does not match, a part missing from a checkpoint,
or a file SQLite cannot read ends what is trusted. The master starts from the valid
prefix, says loudly what it dropped, moves the damaged file aside and writes the state
it recovered to a new one; the workers' resumption brings back the crawled state.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from services.master.memory.records import _SCHEMA, FORMAT, JournalFailed, _crc
from services.master.model.metrics import JOURNAL_COMMIT_OPERATIONS, JOURNAL_COMMIT_SECONDS, JOURNAL_STALLED

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ writing

_Op = Callable[[sqlite3.Connection], None]


class Journal:
    """Appends and commits on its own thread; tells the event loop what is on disk."""

    def __init__(self, path: Path, *, epoch: int, next_seq: int, synchronous: str = "FULL") -> None:
        self.path = path
        self.epoch = epoch
        self.synchronous = synchronous
        self._position = 0  # every operation appended, numbered
        self._durable = 0  # every operation committed up to this number
        self._next_seq = next_seq
        self._queue: list[tuple[int, _Op]] = []
        self._cv = threading.Condition()
        self._closing = False
        self._waiters: deque[tuple[int, asyncio.Future[None] | Callable[[], None]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.failed: BaseException | None = None
        self.on_failure: Callable[[BaseException], None] | None = None
        # Set while commits fail (a full disk, a read-only directory): the writer tries
        # again, nothing is acknowledged meanwhile, and the master says it is not serving.
        self.stalled: BaseException | None = None
        self.on_stall: Callable[[BaseException | None], None] | None = None
        # Bytes appended per account since its last checkpoint, and each checkpoint's size.
        self.bytes_since_checkpoint: dict[str, int] = {}
        self.checkpoint_bytes: dict[str, int] = {}
        # Accounts whose checkpoint is being encoded, and the rows appended meanwhile.
        self._checkpointing: set[str] = set()
        self._row_sizes: dict[str, list[tuple[int, int]]] = {}

    @classmethod
    def create(cls, path: Path, *, epoch: int, next_seq: int, synchronous: str = "FULL") -> Journal:
        """Opens (or creates) the file and records the new epoch."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
            with connection:
                connection.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("format", FORMAT), ("epoch", str(epoch))],
                )
        finally:
            connection.close()
        return cls(path, epoch=epoch, next_seq=next_seq, synchronous=synchronous)

    # ---------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="imsync-journal", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Commits what is queued and stops the thread."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        # Whatever the thread resolved last is still in the loop's queue.
        await asyncio.sleep(0)

    # ------------------------------------------------------------ appends

    def enqueue(self, op: _Op) -> None:
        """Runs `op` on the writer thread, in the transaction of its next commit."""
        if self.failed is not None:
            raise JournalFailed(f"the journal failed: {self.failed}")
        self._position += 1
        with self._cv:
            self._queue.append((self._position, op))
            self._cv.notify()

    def append(self, account_id: str, encode: Callable[[], bytes]) -> None:
        """Journals a change to an account; `encode` runs on the writer thread."""
        seq = self._next_seq
        self._next_seq += 1

        def op(connection: sqlite3.Connection) -> None:
            body = encode()
            connection.execute(
                "INSERT INTO journal (seq, account_id, crc, body) VALUES (?, ?, ?, ?)",
                (seq, account_id, _crc(body), body),
            )
            self.bytes_since_checkpoint[account_id] = self.bytes_since_checkpoint.get(account_id, 0) + len(body)
            if account_id in self._checkpointing:
                self._row_sizes.setdefault(account_id, []).append((seq, len(body)))

        self.enqueue(op)

    def put_command(self, request_id: str, encode: Callable[[], bytes]) -> None:
        def op(connection: sqlite3.Connection) -> None:
            body = encode()
            connection.execute(
                "INSERT OR REPLACE INTO commands (request_id, crc, body) VALUES (?, ?, ?)",
                (request_id, _crc(body), body),
            )

        self.enqueue(op)

    def rekey_commands(self, rows: list[tuple[str, Callable[[], bytes]]]) -> None:
        """A journal of an earlier version kept commands by request id alone; request ids
        are per account now: its rows are written again under `rows`' keys."""

        def op(connection: sqlite3.Connection) -> None:
            if not connection.execute(
                "SELECT 1 FROM commands WHERE instr(request_id, char(10)) = 0 LIMIT 1"
            ).fetchone():
                return
            connection.execute("DELETE FROM commands WHERE instr(request_id, char(10)) = 0")
            for key, encode in rows:
                body = encode()
                connection.execute(
                    "INSERT OR REPLACE INTO commands (request_id, crc, body) VALUES (?, ?, ?)", (key, _crc(body), body)
                )

        self.enqueue(op)

    def forget_command(self, request_id: str) -> None:
        def op(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM commands WHERE request_id = ?", (request_id,))

        self.enqueue(op)

    def put_template(self, template_id: str, encode: Callable[[], bytes]) -> None:
        """A team template, whole (templates are few: a row each, replaced, never compacted)."""

        def op(connection: sqlite3.Connection) -> None:
            body = encode()
            connection.execute(
                "INSERT OR REPLACE INTO templates (template_id, crc, body) VALUES (?, ?, ?)",
                (template_id, _crc(body), body),
            )

        self.enqueue(op)

    def forget_template(self, template_id: str) -> None:
        def op(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM templates WHERE template_id = ?", (template_id,))

        self.enqueue(op)

    def put_row(self, table: str, key: str, body: bytes | None) -> None:
        """A row of a keyed table of the team's (`fleet`, `sessions`), replaced whole; None
        deletes it."""
        if table not in ("fleet", "sessions"):
            raise ValueError(table)

        def op(connection: sqlite3.Connection) -> None:
            if body is None:
                connection.execute(f"DELETE FROM {table} WHERE account_id = ?", (key,))
            else:
                connection.execute(
                    f"INSERT OR REPLACE INTO {table} (account_id, crc, body) VALUES (?, ?, ?)", (key, _crc(body), body)
                )

        self.enqueue(op)

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest journal row appended."""
        return self._next_seq - 1

    async def checkpoint(self, account_id: str, encode: Callable[[], list[bytes]]) -> None:
        """Replaces the account's journal rows so far with its state now, which the caller
        captured just before; `encode` gives the checkpoint's head and then its parts.

        Encoding runs on a thread of its own, so that the writer (and every Ack behind
        it) waits only for the rows to be written, not for them to be made."""
        if account_id in self._checkpointing:
            return
        seq = self.last_seq  # what the captured state covers
        self._checkpointing.add(account_id)
        try:
            rows = await asyncio.to_thread(encode)
            self.write_checkpoint(account_id, seq, rows)
        finally:
            self._checkpointing.discard(account_id)

    def write_checkpoint(self, account_id: str, seq: int, rows: list[bytes]) -> None:
        """Stores an encoded checkpoint covering the account's rows up to `seq`, and deletes them."""

        def op(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM checkpoints WHERE account_id = ?", (account_id,))
            connection.executemany(
                "INSERT INTO checkpoints (account_id, part, seq, crc, body) VALUES (?, ?, ?, ?, ?)",
                [(account_id, index, seq, _crc(body), body) for index, body in enumerate(rows)],
            )
            connection.execute("DELETE FROM journal WHERE account_id = ? AND seq <= ?", (account_id, seq))
            # Rows appended since `seq` are not covered: count only those.
            self.bytes_since_checkpoint[account_id] = sum(
                size for row_seq, size in self._row_sizes.pop(account_id, []) if row_seq > seq
            )
            self.checkpoint_bytes[account_id] = sum(len(body) for body in rows)

        self.enqueue(op)

    def needs_checkpoint(self, minimum: int) -> list[str]:
        """Accounts whose journal rows outweigh both `minimum` bytes and their last checkpoint."""
        return [
            account_id
            for account_id, size in list(self.bytes_since_checkpoint.items())
            if size > max(minimum, self.checkpoint_bytes.get(account_id, 0)) and account_id not in self._checkpointing
        ]

    # --------------------------------------------------------- durability

    def persisted(self) -> asyncio.Future[None] | None:
        """A future resolved once everything appended so far is on disk; None if it already is."""
        if self.failed is not None:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_exception(JournalFailed(f"the journal failed: {self.failed}"))
            return future
        if self._durable >= self._position:
            return None
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((self._position, future))
        return future

    def when_persisted(self, callback: Callable[[], None]) -> None:
        """Calls `callback` once everything appended so far is on disk, in order of calls."""
        if self._durable >= self._position:
            callback()
        elif self.failed is None:
            self._waiters.append((self._position, callback))

    def _committed(self, position: int) -> None:
        self._durable = max(self._durable, position)
        while self._waiters and self._waiters[0][0] <= self._durable:
            _, waiter = self._waiters.popleft()
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():
                    waiter.set_result(None)
            else:
                try:
                    waiter()
                except Exception:
                    log.exception("a journal callback failed")

    def _stalled(self, error: BaseException | None) -> None:
        if (self.stalled is None) == (error is None):
            return
        self.stalled = error
        JOURNAL_STALLED.set(0 if error is None else 1)
        if error is not None:
            log.critical("the journal cannot write (%s); nothing is acknowledged until it can, trying again", error)
        else:
            log.warning("the journal writes again")
        if self.on_stall is not None:
            self.on_stall(error)

    def _failed(self, error: BaseException) -> None:
        self.failed = error
        log.critical("the journal failed; nothing more can be acknowledged: %s", error)
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if isinstance(waiter, asyncio.Future) and not waiter.done():
                waiter.set_exception(JournalFailed(f"the journal failed: {error}"))
        if self.on_failure is not None:
            self.on_failure(error)

    # ------------------------------------------------------------- thread

    def _run(self) -> None:
        assert self._loop is not None
        loop = self._loop

        def tell(callback: Callable[..., None], *args: object) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(callback, *args)

        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            batch: list[tuple[int, _Op]] = []
            pause = 0.0
            while True:
                with self._cv:
                    while not batch and not self._queue and not self._closing:
                        self._cv.wait()
                    if pause:
                        self._cv.wait(pause)  # a failed commit waits, unless closing
                    batch, self._queue = batch + self._queue, []
                    closing = self._closing
                if not batch:
                    if closing:
                        return
                    continue
                started = time.perf_counter()
                try:
                    connection.execute("BEGIN")
                    for _, op in batch:
                        op(connection)
                    connection.execute("COMMIT")
                    JOURNAL_COMMIT_SECONDS.observe(time.perf_counter() - started)
                    JOURNAL_COMMIT_OPERATIONS.observe(len(batch))
                except Exception as error:  # disk full, read-only: try again; nothing is acknowledged meanwhile
                    try:
                        connection.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    if closing:
                        tell(self._failed, error)
                        return
                    if not pause:
                        tell(self._stalled, error)
                    pause = min(2.0, max(0.1, pause * 2))
                    continue
                if pause:
                    pause = 0.0
                    tell(self._stalled, None)
                tell(self._committed, batch[-1][0])
                batch = []
        finally:
            try:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            connection.close()
