"""TLS between imsync's processes: a master serving TLS, and demanding client certificates."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from imsync.v1 import accounts_pb2 as acc
from imsync_client import ImClient
from services.common.sample import SampleAccount
from services.common.tls import ClientTls, ServerTls, open_channel
from services.master.model.retention import KEEP_EVERYTHING
from services.master.server import Master, MasterConfig
from services.master.sync.hub import SyncConfig
from services.worker.engine_config import EngineConfig
from services.worker.sync_engine import SyncEngine

from .conftest import NOW, token_for, write_tokens
from .helpers.certs import Authority
from .sync_harness import crawl_of, running


async def _master(tmp_path: Path, tls: ServerTls) -> tuple[Master, str]:
    config = MasterConfig(
        listen="127.0.0.1:0",
        worker_tokens=write_tokens(tmp_path / "tokens.toml"),
        tls=tls,
        retention=KEEP_EVERYTHING,
        sync=SyncConfig(heartbeat_interval=0.3, lease_duration=1.0),
    )
    master = Master(config)
    port = await master.start()
    return master, f"127.0.0.1:{port}"


def _engine(address: str, tls: ClientTls, account: SampleAccount) -> SyncEngine:
    config = EngineConfig(
        master=address,
        worker_id="test-worker",
        token=token_for("test-worker"),
        tls=tls,
        backoff_initial=0.05,
        backoff_max=0.3,
    )
    engine = SyncEngine(config, [account.account_id])
    engine.publish(account.account_id, crawl_of(account))
    return engine


async def _accounts(address: str, tls: ClientTls | None) -> list[str]:
    async with open_channel(address, tls, [("grpc.use_local_subchannel_pool", 1)]) as channel:
        reply = await ImClient(channel).list_accounts(acc.ListAccountsRequest(), timeout=5)
        return [user.account_id for user in reply.users]


async def test_a_worker_syncs_over_tls_and_plain_text_is_refused(tmp_path: Path) -> None:
    ca = Authority(tmp_path / "certs")
    server = ca.issue("master", server=True)
    master, address = await _master(tmp_path, ServerTls(server.cert, server.key))
    try:
        account = SampleAccount("acc", seed=1, now=NOW)
        account.fill(conversations=2, messages_per_conversation=2, contents=1, comments_per_content=1)
        engine = _engine(address, ClientTls(ca.pem), account)
        async with running(engine):
            await engine.wait_synced(timeout=20)
        assert await _accounts(address, ClientTls(ca.pem)) == ["acc"]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _accounts(address, None)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # A client that trusts another CA does not take the master's word either.
        other = Authority(tmp_path / "other", name="someone else")
        with pytest.raises(grpc.aio.AioRpcError) as distrusted:
            await _accounts(address, ClientTls(other.pem))
        assert distrusted.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await master.stop()


async def test_mutual_tls_refuses_a_client_without_a_certificate_and_stores_nothing(tmp_path: Path) -> None:
    ca = Authority(tmp_path / "certs")
    server = ca.issue("master", server=True)
    worker = ca.issue("worker", server=False)
    master, address = await _master(tmp_path, ServerTls(server.cert, server.key, client_ca=ca.pem))
    try:
        account = SampleAccount("acc", seed=1, now=NOW)
        account.fill(conversations=1, messages_per_conversation=1, contents=1, comments_per_content=1)
        without = _engine(address, ClientTls(ca.pem), account)
        async with running(without):
            with pytest.raises(TimeoutError):
                await without.wait_synced(timeout=1.5)
        assert await master.store.account_versions(["acc"]) == {"acc": 0}, "nothing stored"
        with pytest.raises(grpc.aio.AioRpcError):
            await _accounts(address, ClientTls(ca.pem))

        engine = _engine(address, ClientTls(ca.pem, worker.cert, worker.key), account)
        async with running(engine):
            await engine.wait_synced(timeout=20)
        assert await master.store.account_versions(["acc"]) == {"acc": 1}
    finally:
        await master.stop()


@pytest.mark.e2e
async def test_the_processes_speak_tls_end_to_end(tmp_path: Path) -> None:
    """imsync master --tls-*, imsync gateway --master-ca and --tls-* (HTTPS)."""
    import ssl

    import httpx

    from services import processes

    ca = Authority(tmp_path / "certs")
    server = ca.issue("master", server=True)
    gateway_cert = ca.issue("gateway", server=True)
    client = ca.issue("gateway-client", server=False)
    master = await processes.start(
        [
            "master",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            str(server.cert),
            "--tls-key",
            str(server.key),
            "--tls-client-ca",
            str(ca.pem),
        ]
    )
    try:
        gateway = await processes.start(
            [
                "gateway",
                "--listen",
                "127.0.0.1:0",
                "--master",
                master.address,
                "--master-ca",
                str(ca.pem),
                "--master-cert",
                str(client.cert),
                "--master-key",
                str(client.key),
                "--tls-cert",
                str(gateway_cert.cert),
                "--tls-key",
                str(gateway_cert.key),
            ]
        )
        try:
            assert gateway.ready_line.startswith("imsync gateway listening on https://")
            trust = ssl.create_default_context(cafile=str(ca.pem))
            async with httpx.AsyncClient(base_url=f"https://{gateway.address}", verify=trust) as http:
                answer = await http.get("/api/im/accounts")
                assert answer.status_code == 200 and answer.json()["status_code"] == 0
        finally:
            await gateway.stop()
    finally:
        await master.stop()
