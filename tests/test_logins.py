"""Logins relayed through the master: what a worker's login page asks (a QR code, an SMS
code) is kept with the account and shown only to keys with the login scope; a code an
operator types reaches the owning worker as a command that no reply lookup, event or
journal shows; crawl health is part of every reader's account view."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import logins_pb2 as lg
from imsync.v1 import replies_pb2 as rep
from imsync.v1 import sync_pb2
from imsync_client import ImClient, SyncClient
from services.gateway.app import create_app
from services.master.auth.api_keys import create_api_key
from services.master.model.retention import KEEP_EVERYTHING
from services.master.server import Master, MasterConfig
from services.master.sync.hub import SyncConfig

from . import conftest
from .conftest import token_for, write_tokens

QR = b"\x89PNG\r\n\x1a\n" + b"qr-image-bytes" * 20


def challenge_report(
    account_id: str, kind: e.LoginChallengeKind.ValueType = e.LOGIN_CHALLENGE_KIND_QR_CODE
) -> sync_pb2.AccountStatusReport:
    report = sync_pb2.AccountStatusReport(
        account_id=account_id,
        login_state=e.LOGIN_STATE_LOGGING_IN,
        crawl_state=e.CRAWL_STATE_NEEDS_LOGIN,
        last_error="logged out: the login page replaced the creator pages",
        last_error_reason="LOGIN_EXPIRED",
        login=e.LoginChallenge(kind=kind, qr_png=QR, refreshes_left=3, prompt="短信验证码已发送" if kind == 2 else ""),
        collections=[e.CollectionHealth(collection="comments", missed="work 1: its last page never came")],
    )
    report.login.expire_time.GetCurrentTime()
    report.last_crawl_duration.FromMilliseconds(1500)
    return report


async def test_a_login_is_shown_to_the_login_scope_only_and_a_code_reaches_the_worker(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.toml"
    keys = {
        "reader": create_api_key(keys_file, "reader", ["shop"], ["read", "reply"]),
        "operator": create_api_key(keys_file, "operator", ["shop"], ["read", "login"]),
        "other": create_api_key(keys_file, "other", ["elsewhere"], ["read", "login"]),
    }
    config = MasterConfig(
        listen="127.0.0.1:0",
        worker_tokens=write_tokens(tmp_path / "tokens.toml"),
        api_keys=keys_file,
        sync=SyncConfig(heartbeat_interval=0.5, lease_duration=2.0),
        retention=KEEP_EVERYTHING,
        rate_limit=0,
        data_dir=tmp_path / "data",
    )
    master = Master(config)
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    im = ImClient(channel)

    def as_key(name: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {keys[name]}"),)

    worker = SyncClient(channel, "test-worker", token=token_for("test-worker"))
    events: list[ev.Event] = []

    async def follow(key: str) -> None:
        async for response in im.stream_events(ev.StreamEventsRequest(), metadata=as_key(key)):
            events.append(response.event)

    followers = [asyncio.create_task(follow(name)) for name in ("reader", "operator")]
    try:
        await worker.open({"shop": 0})
        await worker.write(sync_pb2.SyncDataRequest(account_status=challenge_report("shop")))
        await asyncio.sleep(0.3)

        # Everyone who reads the account sees how the crawls go, never the image.
        account = (await im.get_account(acc.GetAccountRequest(account_id="shop"), metadata=as_key("reader"))).user
        assert account.login_state == e.LOGIN_STATE_LOGGING_IN and account.crawl_state == e.CRAWL_STATE_NEEDS_LOGIN
        assert account.last_error_reason == "LOGIN_EXPIRED" and account.last_crawl_duration.ToMilliseconds() == 1500
        assert account.collections[0].missed.startswith("work 1")
        assert QR not in account.SerializeToString()
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await im.get_login(lg.GetLoginRequest(account_id="shop"), metadata=as_key("reader"))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED and "login" in (denied.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
            await im.get_login(lg.GetLoginRequest(account_id="shop"), metadata=as_key("other"))
        assert elsewhere.value.code() == grpc.StatusCode.PERMISSION_DENIED
        login = (await im.get_login(lg.GetLoginRequest(account_id="shop"), metadata=as_key("operator"))).login
        assert login.challenge.qr_png == QR and login.challenge.refreshes_left == 3 and login.online
        assert "login page" in login.last_error

        # The same over REST: the image as base64, for keys that may.
        app = create_app(channel=channel)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            shown = await http.get(
                "/api/im/accounts/shop/login", headers={"Authorization": f"Bearer {keys['operator']}"}
            )
            assert shown.status_code == 200 and shown.json()["data"]["login"]["challenge"]["kind"] == "qr_code"
            assert (
                await http.get("/api/im/accounts/shop/login", headers={"Authorization": f"Bearer {keys['reader']}"})
            ).status_code == 403
            bad = await http.post(
                "/api/im/accounts/shop/login/code",
                json={"code": "12 34"},
                headers={"Authorization": f"Bearer {keys['operator']}"},
            )
            assert bad.status_code == 400 and bad.json()["status_msg"].startswith("code:")

        # A code typed by the operator reaches the worker as a command...
        await worker.write(
            sync_pb2.SyncDataRequest(account_status=challenge_report("shop", e.LOGIN_CHALLENGE_KIND_SMS_CODE))
        )
        sent = await im.submit_login_code(
            lg.SubmitLoginCodeRequest(account_id="shop", code="424242"), metadata=as_key("operator")
        )
        command = await worker.next_command()
        assert command.request_id == sent.request_id and command.submit_login_code.code == "424242"
        await worker.write(
            sync_pb2.SyncDataRequest(
                command_result=sync_pb2.CommandResult(
                    request_id=command.request_id,
                    account_id="shop",
                    outcome=sync_pb2.COMMAND_OUTCOME_SENT,
                )
            )
        )
        restart = await im.restart_login(lg.RestartLoginRequest(account_id="shop"), metadata=as_key("operator"))
        assert (await worker.next_command()).HasField("restart_login") and restart.request_id.startswith("login-")
        await asyncio.sleep(0.3)
        # ... that is nobody's reply, in no event, and never written to disk.
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await im.get_reply(rep.GetReplyRequest(request_id=sent.request_id), metadata=as_key("reader"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert not [event for event in events if event.type == ev.EVENT_TYPE_REPLY_STATE_CHANGED]
        assert all(QR not in event.SerializeToString() for event in events)
        assert [event for event in events if event.type == ev.EVENT_TYPE_ACCOUNT_STATUS_CHANGED], (
            "status changes are events"
        )
        record = await master.book.get("shop", sent.request_id)
        assert record is not None and record.command.submit_login_code.code == "", "not kept once answered"
    finally:
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        await worker.close()
        await channel.close(grace=None)
        await master.stop()
    journal = (tmp_path / "data" / "journal.sqlite3").read_bytes()
    assert b"424242" not in journal and QR not in journal


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: setattr(r.login, "qr_png", b"x" * (256 * 1024 + 1)), "account_status.login.qr_png"),
        (lambda r: setattr(r.login, "prompt", "长" * 1001), "account_status.login.prompt"),
        (lambda r: setattr(r, "last_error", "x" * 4001), "account_status.last_error"),
        (lambda r: setattr(r.last_crawl_at, "seconds", 253_402_300_800), "account_status.last_crawl_at"),
        (lambda r: setattr(r.last_crawl_duration, "seconds", -1), "account_status.last_crawl_duration"),
    ],
)
async def test_a_status_report_a_reader_could_not_be_shown_is_refused_by_name(
    master: conftest.Master, change: Callable[[sync_pb2.AccountStatusReport], None], field: str
) -> None:
    worker = master.sync()
    await worker.open({"shop": 0})
    report = challenge_report("shop")
    change(report)
    await worker.write(sync_pb2.SyncDataRequest(account_status=report))
    nack = (await worker.receive()).nack
    assert nack.status.message.startswith(field), nack.status.message
    # The stream goes on, and a good report is taken.
    await worker.write(sync_pb2.SyncDataRequest(account_status=challenge_report("shop")))
    await asyncio.sleep(0.2)
    assert (await master.store.get_account("shop")).login_state == e.LOGIN_STATE_LOGGING_IN
    await worker.close()
