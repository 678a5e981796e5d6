"""What an operator relies on: one process per port and per data directory, health that
tells the truth, metrics whose series stay bounded, logs one line per record."""

from __future__ import annotations

import asyncio
import collections
import errno
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from imsync.v1 import accounts_pb2, accounts_pb2_grpc
from services import processes
from services.common import logs
from services.common.local_redis import RedisServer
from services.common.sample import sample_accounts
from services.gateway import observe
from services.gateway.observe import HttpMetrics
from services.master.auth.worker_tokens import WorkerTokens, add_worker_token
from services.master.model.retention import KEEP_EVERYTHING
from services.master.server import SERVICE_NAMES, Master, MasterConfig
from services.master.sync.hub import SyncConfig

from . import waiting
from .conftest import NOW, token_for, write_tokens
from .helpers.cli import imsync

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def refused_with_one_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit code 2, one line on stderr holding every `expected` text, no traceback, and never
    a "listening" line."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert "Traceback" not in done.stderr + done.stdout
    assert "listening on" not in done.stdout, done.stdout


# ------------------------------------------------------------------ one per port, one per directory


async def test_a_second_master_on_a_port_or_a_data_directory_exits_with_one_line(tmp_path: Path) -> None:
    first = await processes.start(["master", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "a")])
    try:
        done = await asyncio.to_thread(imsync, "master", "--listen", first.address, "--data-dir", str(tmp_path / "b"))
        refused_with_one_line(done, first.address, "in use")
        assert not (tmp_path / "b" / "journal.sqlite3").exists(), "the refused master opened no journal"

        done = await asyncio.to_thread(imsync, "master", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "a"))
        refused_with_one_line(done, str(tmp_path / "a"), f"pid {first.process.pid}", first.address)

        # Its side addresses too, before it says it listens.
        for flag in ("--metrics-listen", "--gateway-listen"):
            done = await asyncio.to_thread(
                imsync, "master", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "c"), flag, first.address
            )
            refused_with_one_line(done, flag, first.address)

        # The first one never noticed.
        assert first.process.returncode is None
        channel = grpc.aio.insecure_channel(first.address)
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert answer.status == SERVING
        finally:
            await channel.close(grace=None)
    finally:
        await first.stop()
    # The lock goes with the process: the directory is free again.
    again = await processes.start(["master", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "a")])
    await again.stop()


async def test_a_gateway_a_simulator_and_a_worker_on_a_busy_port_exit_with_one_line(tmp_path: Path) -> None:
    master = await processes.start(["master", "--listen", "127.0.0.1:0"])
    try:
        busy = master.address
        for args in (
            ["gateway", "--listen", busy],
            ["gateway", "--listen", "127.0.0.1:0", "--metrics-listen", busy],
            ["sim", "--listen", busy],
        ):
            refused_with_one_line(await asyncio.to_thread(imsync, *args), busy, "in use")
        config = tmp_path / "worker.toml"
        config.write_text(
            f'master = "{busy}"\nworker_id = "w"\ntoken = "t"\n[[accounts]]\naccount_id = "a"\nadapter = "sample"\n'
        )
        done = await asyncio.to_thread(imsync, "worker", "--config", str(config), "--metrics-listen", busy)
        refused_with_one_line(done, "--metrics-listen", busy)
    finally:
        await master.stop()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["master", "--listen", "nonsense"], "argument --listen: expected HOST:PORT, got 'nonsense'"),
        (["master", "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:x"], "argument --gateway-listen:"),
        (["gateway", "--listen", "127.0.0.1:99999"], "argument --listen: port out of range"),
        (["sim", "--listen", ":8090"], "argument --listen: expected HOST:PORT"),
        (["demo", "--master-listen", "127.0.0.1:70000"], "argument --master-listen: port out of range"),
        (["worker", "--config", "w.toml", "--metrics-listen", "9464"], "argument --metrics-listen:"),
        (["master", "--heartbeat-seconds", "-1"], "argument --heartbeat-seconds: more than 0, not -1"),
        (["master", "--lease-seconds", "0"], "argument --lease-seconds: more than 0, not 0"),
        (["master", "--cache-max-bytes", "-5"], "argument --cache-max-bytes: at least 0, not -5"),
        (["gateway", "--http-header-timeout", "0"], "argument --http-header-timeout: more than 0"),
    ],
)
def test_an_address_or_a_number_out_of_range_is_a_usage_error_naming_the_flag(args: list[str], expected: str) -> None:
    """Before anything starts. An address was a traceback from the server's start (the
    gateway's after it had said it listened); a heartbeat, a lease or a size below 0 was
    taken as given."""
    done = imsync(*args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert expected in done.stderr.strip().splitlines()[-1], done.stderr
    assert "Traceback" not in done.stderr and "listening on" not in done.stdout


def test_a_bad_environment_value_is_a_usage_error_too() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "sim"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "IMSYNC_SIM_ACCOUNTS": "three"},
    )
    assert done.returncode == 2 and "argument --accounts: invalid int value: 'three'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_files_the_commands_cannot_use_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no such folder" / "keys.toml"
    refused_with_one_line(
        imsync("api-key", "create", "fang", "--scopes", "read", "--file", str(missing)), str(missing), "No such file"
    )
    refused_with_one_line(
        imsync("worker-token", "w", "--accounts", "*", "--file", str(missing)), str(missing), "No such file"
    )
    not_pem = tmp_path / "cert.pem"
    not_pem.write_text("not a certificate")
    for cert, why in ((tmp_path / "none.pem", "No such file"), (not_pem, "PEM")):
        done = imsync("gateway", "--listen", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(cert))
        refused_with_one_line(done, "--tls-cert", str(cert), why)
    refused_with_one_line(imsync("gateway", "--listen", "127.0.0.1:0", "--tls-key", str(not_pem)), "--tls-key needs")


def test_a_second_listener_on_the_masters_port_is_refused_by_the_kernel(tmp_path: Path) -> None:
    """Without SO_REUSEPORT on the master's socket, nothing can share its port, even a
    process that asks for SO_REUSEPORT itself (the kernel splitting connections)."""
    import socket

    async def run() -> None:
        master = Master(MasterConfig(listen="127.0.0.1:0", retention=KEEP_EVERYTHING))
        port = await master.start()
        try:
            with socket.socket() as other:
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                with pytest.raises(OSError) as refused:
                    other.bind(("127.0.0.1", port))
                assert refused.value.errno == errno.EADDRINUSE
        finally:
            await master.stop()

    asyncio.run(run())


# ------------------------------------------------------------------ health


class Watched:
    """What the master's health Watch streamed, as it streams it."""

    def __init__(self, channel: grpc.aio.Channel, service: str = "") -> None:
        self.statuses: list[int] = []
        self._call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service))
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for answer in self._call:
                self.statuses.append(answer.status)
        except grpc.aio.AioRpcError:
            pass  # the master went away

    async def becomes(self, status: int, timeout: float = 15) -> None:
        await waiting.eventually(lambda: self.statuses and self.statuses[-1] == status, timeout=timeout)

    async def close(self) -> None:
        self._call.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_health_is_not_serving_while_draining_and_list_names_every_service(tmp_path: Path) -> None:
    master = Master(MasterConfig(listen="127.0.0.1:0", retention=KEEP_EVERYTHING))
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        listed = await stub.List(health_pb2.HealthListRequest())
        assert set(listed.statuses) == {"", *SERVICE_NAMES}
        assert {s.status for s in listed.statuses.values()} == {SERVING}
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

        watched = [Watched(channel), Watched(channel, "imsync.v1.SyncService")]
        for watch in watched:
            await watch.becomes(SERVING)
        stopping = asyncio.create_task(master.stop(grace=2))
        for watch in watched:
            await watch.becomes(NOT_SERVING)
            assert watch.statuses == [SERVING, NOT_SERVING]
        await stopping
        for watch in watched:
            await watch.close()
    finally:
        await channel.close(grace=None)


@pytest.fixture
def full_directory(tmp_path: Path) -> Iterator[Path]:
    """A directory on a file system of its own, 4 MiB, which a test can fill to the last byte."""
    where = tmp_path / "small-disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> Path:
    """Writes a file until the file system has no byte left: ENOSPC for whoever writes next."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        try:
            while True:
                out.write(b"\0")
        except OSError:
            pass
    return filler


async def test_health_is_not_serving_while_the_journal_cannot_write_and_nothing_is_acknowledged(
    tmp_path: Path, full_directory: Path
) -> None:
    from imsync_client import SyncClient

    config = MasterConfig(
        listen="127.0.0.1:0",
        worker_tokens=write_tokens(tmp_path / "tokens.toml"),
        data_dir=full_directory / "data",
        retention=KEEP_EVERYTHING,
        sync=SyncConfig(heartbeat_interval=0.5, lease_duration=5.0),
    )
    master = Master(config)
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    account = sample_accounts(1, now=NOW, seed=5)[0]
    sync = SyncClient(channel, "test-worker", token=token_for("test-worker"))
    try:
        watch = Watched(channel)
        await watch.becomes(SERVING)
        await sync.open({account.account_id: 0})
        filler = fill(full_directory)

        pushed = asyncio.create_task(sync.push_snapshot(account.account_id, 1, account.account, account.batch))
        await watch.becomes(NOT_SERVING)
        assert "journal" in master.health.reasons
        assert REGISTRY.get_sample_value("imsync_journal_stalled") == 1
        await asyncio.sleep(1.0)
        assert not pushed.done(), "nothing is acknowledged while the journal cannot write it"

        filler.unlink()  # room again: the journal's next try succeeds
        await watch.becomes(SERVING)
        assert await asyncio.wait_for(pushed, 15) == 1
        assert REGISTRY.get_sample_value("imsync_journal_stalled") == 0
        held = master.store.count_entities()  # type: ignore[attr-defined]
        assert held > 0
        await watch.close()
    finally:
        await sync.close()
        await channel.close(grace=None)
        await master.stop()
    # What was acknowledged after the stall is on disk.
    again = Master(MasterConfig(listen="127.0.0.1:0", data_dir=full_directory / "data", retention=KEEP_EVERYTHING))
    await again.start()
    try:
        assert again.recovery is not None and (again.recovery.accounts, again.recovery.entities) == (1, held)
    finally:
        await again.stop()


async def test_health_is_not_serving_while_redis_does_not_answer(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    master = Master(
        MasterConfig(listen="127.0.0.1:0", store=redis.url, redis_prefix="health", retention=KEEP_EVERYTHING)
    )
    try:
        port = await master.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        watch = Watched(channel)
        await watch.becomes(SERVING)
        redis.stop()
        await watch.becomes(NOT_SERVING)
        assert "redis" in master.health.reasons
        redis.start()  # on the same port, with its data
        await watch.becomes(SERVING)
        assert watch.statuses == [SERVING, NOT_SERVING, SERVING]
        await watch.close()
        await channel.close(grace=None)
    finally:
        await master.stop()
        redis.stop()


async def test_redis_out_of_reach_is_said_once_in_the_log_and_never_shown_to_callers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While Redis is away every loop of the master fails each second. Each says so once,
    as a warning, and once more when Redis is back: not a traceback every second. A caller
    is answered UNAVAILABLE without Redis's address, which is the operator's to know."""
    redis = RedisServer(tmp_path / "redis").start()
    master = Master(MasterConfig(listen="127.0.0.1:0", store=redis.url, redis_prefix="away", retention=KEEP_EVERYTHING))
    caplog.set_level(logging.INFO, logger="services")
    try:
        port = await master.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        read = accounts_pb2.ListAccountsRequest()
        await accounts.ListAccounts(read)
        redis.stop()
        await asyncio.sleep(4)  # every loop has failed a few times
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await accounts.ListAccounts(read)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Redis" in (refused.value.details() or "")
        assert str(redis.port) not in (refused.value.details() or ""), refused.value.details()
        during = list(caplog.records)

        redis.start()  # on the same port, with its data
        loops = {"scheduling", "the sweep", "reading the event stream", "reading the command notices"}
        await waiting.eventually(lambda: all(f"{loop}: working again" in caplog.text for loop in loops), timeout=15)
        await accounts.ListAccounts(read)
        await channel.close(grace=None)
    finally:
        await master.stop()
        redis.stop()

    assert not [r for r in caplog.records if r.exc_info], "no traceback for Redis being away"
    said = collections.Counter(
        r.getMessage().partition(": out of reach")[0] for r in during if ": out of reach (" in r.getMessage()
    )
    assert loops <= set(said), said
    assert set(said.values()) == {1}, said
    assert all(f"{redis.port}" in r.getMessage() for r in during if ": out of reach (" in r.getMessage())
    back = collections.Counter(
        r.getMessage().partition(": working again")[0] for r in caplog.records if ": working again," in r.getMessage()
    )
    assert back == said, (back, said)


# ------------------------------------------------------------------ metrics


def test_the_gateways_http_metrics_read_as_prometheus_clients_counter_and_histogram_would() -> None:
    """HttpMetrics (plain lists, collected when scraped) exposes what a Counter and a
    Histogram of the same names, labels and buckets fed the same requests expose."""
    observed = [
        ("/api/im/conversations", "GET", 200, 0.0002),
        ("/api/im/conversations", "GET", 200, 0.0005),  # on a bound: in its bucket
        ("/api/im/conversations", "GET", 304, 0.003),
        ("/api/im/replies", "POST", 400, 0.7),
        ("/api/im/replies", "POST", 200, 42.0),  # past every bound
    ]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    metrics = HttpMetrics()
    ours.register(metrics)
    requests = Counter(
        "imsync_http_requests",
        "HTTP requests the gateway answered, by route, method and status",
        ["route", "method", "code"],
        registry=theirs,
    )
    seconds = Histogram(
        "imsync_http_request_seconds",
        "How long the gateway took per HTTP request (streams: their whole life)",
        ["route", "method"],
        buckets=observe._BUCKETS,
        registry=theirs,
    )
    for route, method, code, took in observed:
        metrics.observe(route, method, code, took)
        requests.labels(route, method, str(code)).inc()
        seconds.labels(route, method).observe(took)
    assert generate_latest(ours) == generate_latest(theirs)


def series() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for metric in REGISTRY.collect()
        if metric.name.startswith("imsync_")
        for sample in metric.samples
    }


def series_count() -> int:
    return len(series())


def label_values() -> set[str]:
    return {
        value
        for metric in REGISTRY.collect()
        if metric.name.startswith("imsync_")
        for sample in metric.samples
        for value in sample.labels.values()
    }


async def test_series_grow_with_accounts_only_never_with_messages(tmp_path: Path) -> None:
    """Labels hold accounts, methods, codes and reasons: ten times the messages makes no new
    series; each new account adds the same few."""
    from imsync_client import SyncClient

    master = Master(
        MasterConfig(
            listen="127.0.0.1:0",
            worker_tokens=write_tokens(tmp_path / "tokens.toml"),
            retention=KEEP_EVERYTHING,
        )
    )
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    sync = SyncClient(channel, "test-worker", token=token_for("test-worker"))
    try:
        small = sample_accounts(4, now=NOW, seed=101)
        await sync.open({a.account_id: 0 for a in small})
        for account in small[:2]:
            assert await sync.push_snapshot(account.account_id, 1, account.account, account.batch) == 1
        two = series()

        bigger = sample_accounts(2, now=NOW, seed=101, size="bench")  # the same two accounts, ~40x the entities
        for account in bigger:
            assert await sync.push_snapshot(account.account_id, 2, account.account, account.batch) == 2
        assert series() == two, f"more messages, no more series: {series() - two}"
        ids = {m.message_id for a in bigger for m in a.batch.messages} | {
            c.conversation_id for a in bigger for c in a.batch.conversations
        }
        assert not ids & label_values(), "no message or conversation id is a label"

        for account in small[2:]:
            assert await sync.push_snapshot(account.account_id, 1, account.account, account.batch) == 1
        four = series_count()
        per_account = (four - len(two)) / 2
        assert 0 < per_account <= 20, per_account
    finally:
        await sync.close()
        await channel.close(grace=None)
        await master.stop()


# ------------------------------------------------------------------ logs


def test_json_logs_are_one_object_a_line_with_the_request_id_and_the_traceback_folded_in() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs._WithRequestId())
    log = logging.getLogger("test.logs.json")
    log.addHandler(handler)
    log.propagate = False
    token = logs.request_id.set("req-42")
    try:
        try:
            raise RuntimeError("line one\nline two")
        except RuntimeError:
            log.exception("a Playwright error:\n  waiting for locator\n  locator resolved to hidden")
    finally:
        logs.request_id.reset(token)
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert entry["request_id"] == "req-42" and entry["level"] == "ERROR"
    assert "locator resolved to hidden" in entry["message"] and "line two" in entry["error"]

    text = logs.TextFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "one\ntwo", None, None)
    assert text.format(record).count("\n") == 0


def test_request_ids_taken_only_when_safe_to_log() -> None:
    assert logs.request_id_of("abc-123") == "abc-123"
    for hostile in ("a b", "x" * 200, "line\nbreak", "", "é"):
        made = logs.request_id_of(hostile)
        assert made != hostile and len(made) == 16


def test_flags_before_or_after_the_command_and_the_version() -> None:
    done = imsync("--version")
    assert done.returncode == 0 and done.stdout.startswith("imsync "), done
    for args in (["--log-level", "debug", "sim", "--help"], ["sim", "--log-level", "debug", "--help"]):
        assert imsync(*args).returncode == 0
    done = imsync("sim", "--log-level", "loud")
    assert done.returncode == 2 and "--log-level" in done.stderr


def test_a_keys_or_tokens_file_it_cannot_take_stops_the_master_at_start(tmp_path: Path) -> None:
    """It ran without them (every key refused, the file's error in the log once); a folder
    named as the file made every call fail inside."""
    broken = tmp_path / "keys.toml"
    broken.write_text("[keys.fang\nscopes = 'read'\n")
    done = imsync("master", "--listen", "127.0.0.1:0", "--api-keys", str(broken))
    refused_with_one_line(done, "--api-keys", str(broken))
    done = imsync("master", "--listen", "127.0.0.1:0", "--worker-tokens", str(tmp_path))
    refused_with_one_line(done, "--worker-tokens", str(tmp_path), "Is a directory")


def test_a_keys_file_that_breaks_later_keeps_the_keys_taken_before(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    add_worker_token(path, "w-1", ["*"])
    tokens = WorkerTokens(path)
    assert tokens.may_sync("w-1", "a") and tokens.problem() is None
    path.unlink()
    path.mkdir()  # not readable as a file any more
    assert tokens.may_sync("w-1", "a"), "what was taken before holds"
    assert tokens.problem() == "Is a directory"


async def test_missing_keys_or_tokens_files_are_warned_of_at_start(tmp_path: Path) -> None:
    master = await processes.start(
        [
            "master",
            "--listen",
            "127.0.0.1:0",
            "--api-keys",
            str(tmp_path / "typo" / "keys.toml"),
            "--worker-tokens",
            str(tmp_path / "tokens.toml"),
        ],
        merge_stderr=True,
    )
    try:
        warnings = [line for line in master.output if "WARNING" in line]
        assert any("--api-keys" in line and "typo" in line and "no such file" in line for line in warnings), warnings
        assert any("--worker-tokens" in line and "no such file" in line for line in warnings), warnings
        assert not [line for line in master.output if "not serving" in line], "starting is not news"
    finally:
        await master.stop()
