"""A master process killed with SIGKILL, or restarted over a damaged journal, on real processes.

The worker's engine runs in this process, so the test knows exactly which versions the
master acknowledged; a client marks items read over gRPC, and the team writes notes and
templates, assigns conversations and sets them done or open, each keeping what the master
acknowledged. After every restart the master's Welcome must offer at least every
acknowledged version, every acknowledged mark, note and template must be there (and each
conversation's owner and state the last acknowledged or a later one), and once the worker
has resumed the master must serve exactly the worker's truth.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from services import processes
from services.master.memory.records import FILE_NAME

from . import waiting
from .conftest import NOW
from .crash_rig import ACCOUNTS, Rig, TeamLog, WatchedEngine, handled, read_items, settled
from .sync_harness import crawl_of, running

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    rig = Rig(tmp_path)
    try:
        yield rig
    finally:
        if rig.master is not None:
            print("\n".join(rig.master.output))  # shown when the test fails
            await rig.master.stop()


async def test_sigkill_at_random_moments_loses_nothing_acknowledged(rig: Rig) -> None:
    rounds = int(os.environ.get("IMSYNC_CRASH_ROUNDS", "6"))
    seed = int(os.environ.get("IMSYNC_CRASH_SEED", str(random.randrange(10**6))))
    print(f"crash test: {rounds} rounds, IMSYNC_CRASH_SEED={seed}")
    rng = random.Random(seed)
    await rig.start_master()
    engine = rig.make_engine()
    marks: dict[str, set[str]] = {a: set() for a in ACCOUNTS}
    team_log = TeamLog()
    async with running(engine):
        await engine.wait_synced(timeout=30)
        for round_ in range(rounds):
            crawler = asyncio.create_task(rig.crawl_forever(random.Random(rng.random())))
            reader = asyncio.create_task(rig.read_forever(random.Random(rng.random()), marks))
            team = asyncio.create_task(rig.handle_forever(random.Random(rng.random()), team_log))
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            moment = rng.choice(["any", "ack", "mark", "handled"])
            if moment == "any":
                rig.kill_master()
            elif moment == "ack":  # the moment the next Ack arrives
                engine.kill_on_ack = rig.kill_master
            elif moment == "mark":  # the moment the next read mark is acknowledged
                rig.kill_on_mark = True
            else:  # the moment the next note, assignment, state or template is acknowledged
                rig.kill_on_handled = True
            assert rig.master is not None
            await rig.master.process.wait()
            # From here nothing more can be acknowledged.
            acknowledged = {a: account.confirmed_version for a, account in engine.accounts.items()}
            marked = {a: set(items) for a, items in marks.items()}
            crawler.cancel()
            reader.cancel()
            team.cancel()
            await asyncio.gather(crawler, reader, team, return_exceptions=True)
            engine.kill_on_ack, rig.kill_on_mark, rig.kill_on_handled = None, False, False
            welcomes = len(engine.welcomes)

            restarted = await rig.start_master()
            # A kill tears at most an uncommitted tail: nothing is reported damaged.
            assert not any("JOURNAL DAMAGED" in line for line in restarted.output), list(restarted.output)
            seen = welcomes
            await waiting.eventually(lambda: len(engine.welcomes) > seen, timeout=30)  # noqa: B023 (awaited here)
            offered = engine.welcomes[welcomes]
            for account_id, version in acknowledged.items():
                assert offered[account_id] >= version, (
                    f"round {round_}: {account_id} version {version} was acknowledged, the restarted master has {offered[account_id]}"
                )
            for account_id, items in marked.items():
                got = await read_items(rig.address, account_id)
                missing = items - got
                assert not missing, f"round {round_}: acknowledged read marks lost: {sorted(missing)[:5]}"
            lost = await handled(rig.address, team_log)
            assert not lost, f"round {round_}: the team's acknowledged handling lost: {lost[:5]}"
        await settled(rig)
    assert sum(len(items) for items in marks.values()) > rounds, "the reader marked items in most rounds"
    assert sum(map(len, team_log.notes.values())) > rounds, "the team wrote notes in most rounds"
    assert team_log.templates and team_log.states, "and templates, and states"


def _journal_rows(data_dir: Path) -> list[tuple[int, bytes]]:
    with sqlite3.connect(data_dir / FILE_NAME) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as SQLite does at the next open
        return list(db.execute("SELECT seq, body FROM journal ORDER BY seq"))


async def _crash_with_journal_rows(rig: Rig) -> WatchedEngine:
    """A master that took several versions and marks, killed: its journal holds rows."""
    await rig.start_master()
    engine = rig.make_engine()
    rng = random.Random(4)
    async with running(engine):
        await engine.wait_synced(timeout=30)
        for step in range(12):
            account_id = ACCOUNTS[step % 3]
            rig.samples[account_id].grow(NOW + step * 10)
            engine.publish(account_id, crawl_of(rig.samples[account_id]))
            await engine.wait_synced(timeout=30)
        marks: dict[str, set[str]] = {a: set() for a in ACCOUNTS}
        reader = asyncio.create_task(rig.read_forever(rng, marks))
        await waiting.eventually(lambda: sum(map(len, marks.values())) >= 5, timeout=20)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        rig.kill_master()
        assert rig.master is not None
        await rig.master.process.wait()
    return engine


async def _restart_and_resume(rig: Rig, engine: WatchedEngine) -> processes.Child:
    child = await rig.start_master(port=rig.port)
    rig.master = child
    async with running(engine):
        await settled(rig)
    return child


async def test_a_journal_with_a_flipped_byte(rig: Rig) -> None:
    engine = await _crash_with_journal_rows(rig)
    rows = _journal_rows(rig.data_dir)
    assert len(rows) > 10
    seq, body = rows[len(rows) // 2]
    path = rig.data_dir / FILE_NAME
    data = bytearray(path.read_bytes())
    where = data.find(body)
    assert where >= 0, "the row's body is stored whole in one page"
    data[where + len(body) // 2] ^= 0x20
    path.write_bytes(bytes(data))

    child = await _restart_and_resume(rig, engine)
    said = "\n".join(child.output) + child.ready_line
    assert f"journal record {seq} is damaged" in said, said
    assert "JOURNAL DAMAGED" in said
    assert list(rig.data_dir.glob(f"{FILE_NAME}.damaged-*")), "the damaged file is kept for a person to look at"


async def test_a_truncated_journal(rig: Rig) -> None:
    engine = await _crash_with_journal_rows(rig)
    rows = _journal_rows(rig.data_dir)
    path = rig.data_dir / FILE_NAME
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.truncate(size * 2 // 3 // 4096 * 4096)

    child = await _restart_and_resume(rig, engine)
    said = "\n".join(child.output) + child.ready_line
    assert "JOURNAL DAMAGED" in said, said
    assert rows, "there were rows to lose"


async def test_sigterm_answers_what_was_taken_and_sends_workers_away(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.worker.sync_engine")
    await rig.start_master()
    engine = rig.make_engine()
    async with running(engine):
        await engine.wait_synced(timeout=30)
        crawler = asyncio.create_task(rig.crawl_forever(random.Random(9)))
        await asyncio.sleep(0.5)
        assert rig.master is not None
        rig.master.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await rig.master.process.wait() == 0
        crawler.cancel()
        await asyncio.gather(crawler, return_exceptions=True)
        acknowledged = {a: account.confirmed_version for a, account in engine.accounts.items()}
        assert any("the master is going away" in record.getMessage() for record in caplog.records)
        welcomes = len(engine.welcomes)
        snapshots = engine.bytes_sent["snapshot"]

        child = await rig.start_master()
        said = "\n".join(child.output)
        assert "JOURNAL DAMAGED" not in said
        await waiting.eventually(lambda: len(engine.welcomes) > welcomes, timeout=30)
        assert engine.welcomes[welcomes] == acknowledged, "a clean stop leaves exactly what was acknowledged"
        await settled(rig)
        assert engine.bytes_sent["snapshot"] == snapshots, "the worker resumed with deltas, no full resync"


async def test_a_damaged_write_ahead_log_is_reported_not_silently_cut(rig: Rig) -> None:
    """SQLite replays its -wal file up to the first bad checksum and drops the rest without a
    word; committed frames after a damaged one are acknowledged work, so the master says so."""
    engine = await _crash_with_journal_rows(rig)
    wal = rig.data_dir / f"{FILE_NAME}-wal"
    data = bytearray(wal.read_bytes())
    page_size = int.from_bytes(data[8:12], "big")
    frames = (len(data) - 32) // (24 + page_size)
    assert frames > 4, "the crash left committed frames in the log"
    middle = 32 + (frames // 3) * (24 + page_size) + 24 + page_size // 2
    data[middle] ^= 0x01
    wal.write_bytes(bytes(data))

    child = await _restart_and_resume(rig, engine)
    said = "\n".join(child.output) + child.ready_line
    assert "write-ahead log is damaged" in said and "JOURNAL DAMAGED" in said, said
