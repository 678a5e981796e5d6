"""API keys: every RPC and every route answers a key scoped to account A the same way
about account B as about an account that does not exist, and never lets it touch B."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import contents_pb2 as cnt
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import discussions_pb2 as dis
from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import fleet_pb2 as fl
from imsync.v1 import logins_pb2 as lg
from imsync.v1 import messages_pb2 as msg
from imsync.v1 import replies_pb2 as rep
from imsync.v1 import search_pb2 as srch
from imsync.v1 import sync_pb2
from imsync.v1 import templates_pb2 as tpl
from imsync.v1 import threads_pb2 as thr
from imsync.v1 import unified_messages_pb2 as uni
from imsync_client import ImClient, SyncClient
from services.common.sample import SampleAccount
from services.gateway.app import create_app, im_services
from services.gateway.routes import routes_of
from services.master.auth.api_keys import create_api_key, revoke_api_key
from services.master.model.retention import KEEP_EVERYTHING
from services.master.server import Master, MasterConfig
from services.master.sync.hub import SyncConfig

from .conftest import NOW, token_for, write_tokens


class Rig:
    def __init__(self, master: Master, channel: grpc.aio.Channel, keys: dict[str, str], keys_file: Path) -> None:
        self.master = master
        self.channel = channel
        self.keys = keys
        self.keys_file = keys_file
        self.im = ImClient(channel)
        self.a = SampleAccount("shop-a", seed=1, now=NOW)
        self.b = SampleAccount("shop-b", seed=2, now=NOW)

    def as_key(self, name: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[name]}"),)


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    keys_file = tmp_path / "api-keys.toml"
    keys = {
        "a-reader": create_api_key(keys_file, "a-reader", ["shop-a"], ["read"]),
        "a-agent": create_api_key(keys_file, "a-agent", ["shop-a"], ["read", "reply", "login", "admin"], agent="阿丽"),
        "all": create_api_key(keys_file, "all", ["*"], ["read", "reply"]),
    }
    config = MasterConfig(
        listen="127.0.0.1:0",
        worker_tokens=write_tokens(tmp_path / "tokens.toml"),
        api_keys=keys_file,
        sync=SyncConfig(heartbeat_interval=0.5, lease_duration=2.0),
        retention=KEEP_EVERYTHING,
        rate_limit=0,
    )
    master = Master(config)
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    rig = Rig(master, channel, keys, keys_file)
    sync = SyncClient(channel, "test-worker", token=token_for("test-worker"))
    await sync.open({"shop-a": 0, "shop-b": 0})
    for account in (rig.a, rig.b):
        account.fill(conversations=3, messages_per_conversation=2, contents=2, comments_per_content=2)
        await sync.push_snapshot(account.account_id, 1, account.account, account.batch)
    try:
        yield rig
    finally:
        await sync.close()
        await channel.close(grace=None)
        await master.stop()


# The RPCs that take no account: tested on their own.
NO_ACCOUNT = {
    "ListAccounts",
    "GetReply",
    "GetCaller",
    "ListTemplates",
    "CreateTemplate",
    "UpdateTemplate",
    "DeleteTemplate",
    "ListManagedAccounts",
    "ListWorkers",
}


def _requests(b: SampleAccount, account: str, exists: bool) -> dict[str, tuple[str, Any]]:
    """For every IM RPC, a request about account `account` (B, or one that does not exist)
    and, for RPCs that find an entity by id alone, about an entity of B (or a made-up id)."""
    conversation = b.batch.conversations[0].conversation_id if exists else "no-such-conversation"
    message = b.batch.messages[0].message_id if exists else "no-such-message"
    content = b.batch.contents[0].content_id if exists else "no-such-content"
    comment = b.batch.comments[0].comment_id if exists else "no-such-comment"
    return {
        "GetAccount": ("get_account", acc.GetAccountRequest(account_id=account)),
        "ListConversations": ("list_conversations", conv.ListConversationsRequest(account_id=account)),
        "GetConversation": (
            "get_conversation",
            conv.GetConversationRequest(account_id=account, conversation_id=conversation),
        ),
        "MarkConversationRead": (
            "mark_conversation_read",
            conv.MarkConversationReadRequest(account_id=account, conversation_id=conversation),
        ),
        "PinConversation": (
            "pin_conversation",
            conv.PinConversationRequest(account_id=account, conversation_id=conversation),
        ),
        "UnpinConversation": (
            "unpin_conversation",
            conv.UnpinConversationRequest(account_id=account, conversation_id=conversation),
        ),
        "MuteConversation": (
            "mute_conversation",
            conv.MuteConversationRequest(account_id=account, conversation_id=conversation),
        ),
        "UnmuteConversation": (
            "unmute_conversation",
            conv.UnmuteConversationRequest(account_id=account, conversation_id=conversation),
        ),
        "AssignConversation": (
            "assign_conversation",
            thr.AssignConversationRequest(account_id=account, conversation_id=conversation, assignee="阿丽"),
        ),
        "ClaimConversation": (
            "claim_conversation",
            thr.ClaimConversationRequest(account_id=account, conversation_id=conversation),
        ),
        "SetConversationState": (
            "set_conversation_state",
            thr.SetConversationStateRequest(
                account_id=account, conversation_id=conversation, thread_state=e.THREAD_STATE_DONE
            ),
        ),
        "MarkConversationUnread": (
            "mark_conversation_unread",
            thr.MarkConversationUnreadRequest(account_id=account, conversation_id=conversation),
        ),
        "AddConversationNote": (
            "add_conversation_note",
            thr.AddConversationNoteRequest(account_id=account, conversation_id=conversation, text="VIP"),
        ),
        "ListConversationNotes": (
            "list_conversation_notes",
            thr.ListConversationNotesRequest(account_id=account, conversation_id=conversation),
        ),
        "SetConversationPresence": (
            "set_conversation_presence",
            thr.SetConversationPresenceRequest(account_id=account, conversation_id=conversation, is_typing=True),
        ),
        "ListMessages": ("list_messages", msg.ListMessagesRequest(account_id=account)),
        "GetMessage": ("get_message", msg.GetMessageRequest(account_id=account, message_id=message)),
        "MarkMessageRead": ("mark_message_read", msg.MarkMessageReadRequest(account_id=account, message_id=message)),
        "ListContents": ("list_contents", cnt.ListContentsRequest(account_id=account)),
        "GetContent": ("get_content", cnt.GetContentRequest(account_id=account, content_id=content)),
        "GetContentStats": ("get_content_stats", cnt.GetContentStatsRequest(account_id=account, content_id=content)),
        "MarkContentRead": ("mark_content_read", cnt.MarkContentReadRequest(account_id=account, content_id=content)),
        "ListDiscussions": ("list_discussions", dis.ListDiscussionsRequest(account_id=account)),
        "GetDiscussion": ("get_discussion", dis.GetDiscussionRequest(account_id=account, comment_id=comment)),
        "MarkDiscussionRead": (
            "mark_discussion_read",
            dis.MarkDiscussionReadRequest(account_id=account, comment_id=comment),
        ),
        "ListUnifiedMessages": ("list_unified_messages", uni.ListUnifiedMessagesRequest(account_id=account)),
        "GetUnifiedStats": ("get_unified_stats", uni.GetUnifiedStatsRequest(account_id=account)),
        "ListUnifiedThreads": ("list_unified_threads", uni.ListUnifiedThreadsRequest(account_id=account)),
        "MarkUnifiedMessageRead": (
            "mark_unified_message_read",
            uni.MarkUnifiedMessageReadRequest(account_id=account, id=f"message:{message}"),
        ),
        "MarkUnifiedMessagesRead": (
            "mark_unified_messages_read",
            uni.MarkUnifiedMessagesReadRequest(account_id=account, ids=[f"comment:{comment}"]),
        ),
        "SendReply": (
            "send_reply",
            rep.SendReplyRequest(
                account_id=account,
                request_id="r-1",
                send_message=sync_pb2.SendMessage(conversation_id=conversation, text="hi"),
            ),
        ),
        "StreamEvents": ("stream_events", ev.StreamEventsRequest(account_ids=[account])),
        "GetLogin": ("get_login", lg.GetLoginRequest(account_id=account)),
        "SubmitLoginCode": ("submit_login_code", lg.SubmitLoginCodeRequest(account_id=account, code="123456")),
        "RestartLogin": ("restart_login", lg.RestartLoginRequest(account_id=account)),
        # Found by id alone, so asked by id: ListAccounts and GetReply are tested on their own below.
        "ListAccounts": ("list_accounts", acc.ListAccountsRequest()),
        "GetCaller": ("get_caller", acc.GetCallerRequest()),
        "Search": ("search", srch.SearchRequest(account_id=account, query="你好")),
        "ListTemplates": ("list_templates", tpl.ListTemplatesRequest()),
        "CreateTemplate": ("create_template", tpl.CreateTemplateRequest(name="hi", text="您好")),
        "UpdateTemplate": ("update_template", tpl.UpdateTemplateRequest(template_id="t", name="hi", text="您好")),
        "DeleteTemplate": ("delete_template", tpl.DeleteTemplateRequest(template_id="t")),
        "RenderTemplate": (
            "render_template",
            tpl.RenderTemplateRequest(template_id="t", account_id=account, conversation_id=conversation),
        ),
        "GetReply": ("get_reply", rep.GetReplyRequest(request_id="r-of-b" if exists else "no-such-reply")),
        "ListManagedAccounts": ("list_managed_accounts", fl.ListManagedAccountsRequest()),
        "ListWorkers": ("list_workers", fl.ListWorkersRequest()),
        "GetManagedAccount": ("get_managed_account", fl.GetManagedAccountRequest(account_id=account)),
        "CreateManagedAccount": (
            "create_managed_account",
            fl.CreateManagedAccountRequest(account=fl.ManagedAccount(account_id=account, adapter="sample")),
        ),
        "UpdateManagedAccount": (
            "update_managed_account",
            fl.UpdateManagedAccountRequest(
                account_id=account, account=fl.ManagedAccount(paused=True), update_mask=FieldMask(paths=["paused"])
            ),
        ),
        "DeleteManagedAccount": ("delete_managed_account", fl.DeleteManagedAccountRequest(account_id=account)),
    }


async def _status(rig: Rig, method: str, request: Any, key: str) -> tuple[grpc.StatusCode, str]:
    call: Callable[..., Any] = getattr(rig.im, method)
    try:
        if method == "stream_events":
            async for _ in call(request, metadata=rig.as_key(key)):
                break
        else:
            await call(request, metadata=rig.as_key(key))
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def _without_account_id(request: Any) -> Any:
    copy = type(request)()
    copy.CopyFrom(request)
    if "account_id" in copy.DESCRIPTOR.fields_by_name:
        copy.ClearField("account_id")
    return copy


async def test_every_rpc_answers_about_b_as_about_an_account_that_does_not_exist(rig: Rig) -> None:
    # A reply of B, sent with a key that may.
    await rig.im.send_reply(
        rep.SendReplyRequest(
            account_id="shop-b",
            request_id="r-of-b",
            send_message=sync_pb2.SendMessage(conversation_id=rig.b.batch.conversations[0].conversation_id, text="x"),
        ),
        metadata=rig.as_key("all"),
    )
    before = await rig.im.get_unified_stats(uni.GetUnifiedStatsRequest(account_id="shop-b"), metadata=rig.as_key("all"))
    rpcs = {method.name for service in im_services() for method in service.methods}
    of_b, of_nobody = _requests(rig.b, "shop-b", True), _requests(rig.b, "ghost", False)
    assert set(of_b) == rpcs, "every RPC has a case"

    for name in sorted(rpcs - NO_ACCOUNT):
        method, request = of_b[name]
        _, nobody_request = of_nobody[name]
        about_b = await _status(rig, method, request, "a-agent")
        about_nobody = await _status(rig, method, nobody_request, "a-agent")
        assert about_b[0] == grpc.StatusCode.PERMISSION_DENIED, (name, about_b)
        assert about_b == (about_nobody[0], about_nobody[1].replace("ghost", "shop-b")), name
        # Asked by id alone, B's entity is as unknown to the key as an id that does not exist.
        if "account_id" in request.DESCRIPTOR.fields_by_name and request.DESCRIPTOR.name not in (
            "ListConversationsRequest",
            "ListMessagesRequest",
            "ListContentsRequest",
            "ListDiscussionsRequest",
            "ListUnifiedMessagesRequest",
            "GetUnifiedStatsRequest",
            "ListUnifiedThreadsRequest",
            "SearchRequest",
            "GetAccountRequest",
            "GetLoginRequest",
            "SubmitLoginCodeRequest",
            "RestartLoginRequest",
            # The fleet's accounts are named by id, never found by another.
            "GetManagedAccountRequest",
            "UpdateManagedAccountRequest",
            "DeleteManagedAccountRequest",
        ):
            by_id = await _status(rig, method, _without_account_id(request), "a-agent")
            by_made_up_id = await _status(rig, method, _without_account_id(nobody_request), "a-agent")
            assert by_id[0] == grpc.StatusCode.NOT_FOUND, (name, by_id)
            assert by_id[0] == by_made_up_id[0], name

    # GetReply and ListAccounts take no account: B's reply is not found, B is not listed.
    code, _ = await _status(rig, "get_reply", of_b["GetReply"][1], "a-agent")
    assert (
        code == (await _status(rig, "get_reply", of_nobody["GetReply"][1], "a-agent"))[0] == grpc.StatusCode.NOT_FOUND
    )
    listed = await rig.im.list_accounts(acc.ListAccountsRequest(), metadata=rig.as_key("a-reader"))
    assert [user.account_id for user in listed.users] == ["shop-a"]
    after = await rig.im.get_unified_stats(uni.GetUnifiedStatsRequest(account_id="shop-b"), metadata=rig.as_key("all"))
    assert after == before, "nothing of B changed"


async def test_keys_scopes_and_revocation(rig: Rig) -> None:
    conversation = rig.a.batch.conversations[0].conversation_id
    request = rep.SendReplyRequest(
        request_id="r-a", send_message=sync_pb2.SendMessage(conversation_id=conversation, text="hi")
    )
    code, details = await _status(rig, "send_reply", request, "a-reader")
    assert code == grpc.StatusCode.PERMISSION_DENIED and "reply" in details
    assert (await _status(rig, "send_reply", request, "a-agent"))[0] == grpc.StatusCode.OK
    assert (await _status(rig, "list_conversations", conv.ListConversationsRequest(account_id="shop-a"), "a-reader"))[
        0
    ] == grpc.StatusCode.OK
    for metadata in ((), (("authorization", "Bearer imk_made_up"),), (("authorization", "Basic x"),)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await rig.im.list_accounts(acc.ListAccountsRequest(), metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert revoke_api_key(rig.keys_file, "a-reader")
    assert (await _status(rig, "list_accounts", acc.ListAccountsRequest(), "a-reader"))[
        0
    ] == grpc.StatusCode.UNAUTHENTICATED


async def test_a_keys_event_stream_carries_its_accounts_only(rig: Rig) -> None:
    seen: list[ev.Event] = []

    async def follow() -> None:
        async for response in rig.im.stream_events(ev.StreamEventsRequest(), metadata=rig.as_key("a-reader")):
            seen.append(response.event)

    follower = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0.3)
        for account in ("shop-b", "shop-a"):
            conversation = (rig.b if account == "shop-b" else rig.a).batch.conversations[0].conversation_id
            await rig.im.mark_conversation_read(
                conv.MarkConversationReadRequest(account_id=account, conversation_id=conversation),
                metadata=rig.as_key("all"),
            )
        async with asyncio.timeout(5):
            while not seen:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert {event.account_id for event in seen} == {"shop-a"}
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


async def test_every_route_answers_403_about_b_and_about_nobody(rig: Rig) -> None:
    app = create_app(channel=rig.channel)
    headers = {"Authorization": f"Bearer {rig.keys['a-agent']}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as http:
        b = rig.b.batch
        routes = [
            ("GET", "/api/im/accounts/{a}", None),
            ("GET", "/api/im/conversations?account_id={a}", None),
            ("GET", f"/api/im/conversations/{b.conversations[0].conversation_id}?account_id={{a}}", None),
            ("PUT", f"/api/im/conversations/{b.conversations[0].conversation_id}/read", {"account_id": "{a}"}),
            ("PUT", f"/api/im/conversations/{b.conversations[0].conversation_id}/pin", {"account_id": "{a}"}),
            ("DELETE", f"/api/im/conversations/{b.conversations[0].conversation_id}/pin?account_id={{a}}", None),
            ("PUT", f"/api/im/conversations/{b.conversations[0].conversation_id}/mute", {"account_id": "{a}"}),
            ("DELETE", f"/api/im/conversations/{b.conversations[0].conversation_id}/mute?account_id={{a}}", None),
            ("PUT", f"/api/im/conversations/{b.conversations[0].conversation_id}/assignee", {"account_id": "{a}"}),
            ("POST", f"/api/im/conversations/{b.conversations[0].conversation_id}/claim", {"account_id": "{a}"}),
            (
                "PUT",
                f"/api/im/conversations/{b.conversations[0].conversation_id}/state",
                {"account_id": "{a}", "thread_state": "THREAD_STATE_DONE"},
            ),
            ("PUT", f"/api/im/conversations/{b.conversations[0].conversation_id}/unread", {"account_id": "{a}"}),
            (
                "POST",
                f"/api/im/conversations/{b.conversations[0].conversation_id}/notes",
                {"account_id": "{a}", "text": "x"},
            ),
            ("GET", f"/api/im/conversations/{b.conversations[0].conversation_id}/notes?account_id={{a}}", None),
            (
                "PUT",
                f"/api/im/conversations/{b.conversations[0].conversation_id}/presence",
                {"account_id": "{a}", "is_typing": True},
            ),
            (
                "POST",
                "/api/im/templates/t/render",
                {"account_id": "{a}", "conversation_id": b.conversations[0].conversation_id},
            ),
            ("GET", "/api/im/search?account_id={a}&query=ab", None),
            ("GET", "/api/im/messages?account_id={a}", None),
            ("GET", f"/api/im/messages/{b.messages[0].message_id}?account_id={{a}}", None),
            ("PUT", f"/api/im/messages/{b.messages[0].message_id}/read", {"account_id": "{a}"}),
            ("GET", "/api/im/contents?account_id={a}", None),
            ("GET", f"/api/im/contents/{b.contents[0].content_id}?account_id={{a}}", None),
            ("GET", f"/api/im/contents/{b.contents[0].content_id}/stats?account_id={{a}}", None),
            ("PUT", f"/api/im/contents/{b.contents[0].content_id}/read", {"account_id": "{a}"}),
            ("GET", "/api/im/discussions?account_id={a}", None),
            ("GET", f"/api/im/discussions/{b.comments[0].comment_id}?account_id={{a}}", None),
            ("PUT", f"/api/im/discussions/{b.comments[0].comment_id}/read", {"account_id": "{a}"}),
            ("GET", "/api/im/unified-messages?account_id={a}", None),
            ("GET", "/api/im/unified-messages/stats?account_id={a}", None),
            ("GET", "/api/im/unified-threads?account_id={a}", None),
            ("PUT", f"/api/im/unified-messages/message:{b.messages[0].message_id}/read", {"account_id": "{a}"}),
            (
                "PUT",
                "/api/im/unified-messages/read-many",
                {"account_id": "{a}", "ids": [f"message:{b.messages[0].message_id}"]},
            ),
            (
                "POST",
                "/api/im/replies",
                {
                    "account_id": "{a}",
                    "request_id": "r",
                    "send_message": {"conversation_id": b.conversations[0].conversation_id, "text": "x"},
                },
            ),
            ("GET", "/api/im/events?account_ids={a}", None),
            ("GET", "/api/im/accounts/{a}/login", None),
            ("POST", "/api/im/accounts/{a}/login/code", {"code": "123456"}),
            ("POST", "/api/im/accounts/{a}/login/restart", {}),
            ("GET", "/api/im/admin/accounts/{a}", None),
            ("POST", "/api/im/admin/accounts", {"account_id": "{a}", "adapter": "sample"}),
            ("PATCH", "/api/im/admin/accounts/{a}", {"paused": True}),
            ("DELETE", "/api/im/admin/accounts/{a}", None),
        ]
        # Every route of the IM API is here, but the two that take no account (tested above).
        every = routes_of(im_services())
        covered = {
            r.method.name
            for r in every
            if any(r.http_method == m and r.template.match(p.partition("?")[0]) is not None for m, p, _ in routes)
        }
        assert covered | NO_ACCOUNT == {r.method.name for r in every}
        for method, path, body in routes:
            answers = []
            for account in ("shop-b", "ghost"):
                json_body = (
                    None
                    if body is None
                    else {k: (v.replace("{a}", account) if isinstance(v, str) else v) for k, v in body.items()}
                )
                response = await http.request(method, path.replace("{a}", account), json=json_body, headers=headers)
                answers.append((response.status_code, response.json()["status_msg"].replace(account, "X")))
            assert answers[0][0] == 403, (method, path, answers)
            assert answers[0] == answers[1], (method, path, answers)
        assert (await http.get("/api/im/accounts")).status_code == 401


async def test_a_key_over_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    keys_file = tmp_path / "api-keys.toml"
    key = create_api_key(keys_file, "busy", ["*"], ["read"])
    config = MasterConfig(listen="127.0.0.1:0", api_keys=keys_file, rate_limit=1.0, retention=KEEP_EVERYTHING)
    master = Master(config)
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        app = create_app(channel=channel)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as http:
            headers = {"Authorization": f"Bearer {key}"}
            answers = [await http.get("/api/im/accounts", headers=headers) for _ in range(4)]
            assert [a.status_code for a in answers[:2]] == [200, 200], "a burst of twice the rate"
            limited = answers[-1]
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
            assert "requests a second" in limited.json()["status_msg"]
            # Too large a body is refused before it is read whole.
            big = await http.put(
                "/api/im/unified-messages/read-many", headers=headers, content=b"[" + b" " * (2 << 20) + b"]"
            )
            assert big.status_code == 413 and big.json()["status_msg"].startswith("body:")
    finally:
        await channel.close(grace=None)
        await master.stop()


def test_the_bucket_refills_with_time() -> None:
    from services.common.rate_limit import RateLimiter

    now = [0.0]
    limiter = RateLimiter(2.0, 2, clock=lambda: now[0])
    assert [limiter.take("k") for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)
    now[0] = 0.5
    assert limiter.take("k") == 0.0
    assert limiter.take("") == 0.0, "no key (a master without keys) is not limited"


async def test_logs_at_the_default_level_hold_no_keys_tokens_or_bodies(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO)
    secret_text = "SECRET-BODY-4711"
    conversation = rig.a.batch.conversations[0].conversation_id
    await rig.im.send_reply(
        rep.SendReplyRequest(
            request_id="logged?",
            send_message=sync_pb2.SendMessage(conversation_id=conversation, text=secret_text),
        ),
        metadata=rig.as_key("a-agent"),
    )
    for metadata in ((("authorization", f"Bearer {rig.keys['a-agent']}x"),), rig.as_key("a-reader")):
        try:
            await rig.im.send_reply(
                rep.SendReplyRequest(
                    request_id="r2", send_message=sync_pb2.SendMessage(conversation_id=conversation, text=secret_text)
                ),
                metadata=metadata,
            )
        except grpc.aio.AioRpcError:
            pass
    # A worker with a wrong token, and one with a right one that sends a bad message.
    for token in ("forged-token-123", token_for("test-worker")):
        sync = SyncClient(rig.channel, "test-worker", token=token)
        try:
            await sync.open({"shop-a": 0})
            bad = sync_pb2.EntityBatch()
            bad.messages.add(message_id="m", conversation_id="c", content=secret_text)  # no create_time: refused
            await sync.push_snapshot("shop-a", 9, rig.a.account, bad)
        except Exception:
            pass
        finally:
            await sync.close()
    logged = caplog.text
    assert logged, "the master did log"
    for secret in (*rig.keys.values(), token_for("test-worker"), "forged-token-123", secret_text):
        assert secret not in logged, secret


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    from starlette.datastructures import Headers

    from services.gateway.grpc_bridge import outgoing_metadata

    headers = Headers({"x-forwarded-for": "6.6.6.6", "host": "gw"})
    from_proxy = dict(outgoing_metadata(headers, "10.0.0.2", frozenset({"10.0.0.2"})))
    from_anyone = dict(outgoing_metadata(headers, "203.0.113.9", frozenset({"10.0.0.2"})))
    assert from_proxy["x-forwarded-for"] == "6.6.6.6, 10.0.0.2"
    assert from_anyone["x-forwarded-for"] == "203.0.113.9", "a stranger's chain is not passed on"
