"""The team's handling of conversations through the IM API, as two agents and a program
would use it: each with its own API key, through the gateway, against a real master."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync_client import ImClient, SyncClient
from services.common.sample import SampleAccount
from services.gateway.app import create_app
from services.master.auth.api_keys import create_api_key
from services.master.model.retention import KEEP_EVERYTHING
from services.master.server import Master, MasterConfig
from services.master.sync.hub import SyncConfig

from .conftest import NOW, token_for, write_tokens
from .waiting import eventually


class Team:
    def __init__(self, master: Master, channel: grpc.aio.Channel, http: httpx.AsyncClient, keys: dict[str, str]):
        self.master, self.channel, self.http, self.keys = master, channel, http, keys
        self.account = SampleAccount("shop", seed=21, now=NOW)

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def call(self, who: str, method: str, path: str, body: Any = None, **params: str) -> httpx.Response:
        return await self.http.request(
            method, path, json=body, params={"account_id": "shop", **params}, headers=self.as_(who)
        )


@pytest_asyncio.fixture
async def team(tmp_path: Path) -> AsyncIterator[Team]:
    keys_file = tmp_path / "api-keys.toml"
    keys = {
        "fang": create_api_key(keys_file, "fang", ["shop"], ["read", "reply"], agent="王芳"),
        "lei": create_api_key(keys_file, "lei", ["shop"], ["read", "reply"], agent="李雷"),
        "bot": create_api_key(keys_file, "bot", ["shop"], ["read", "reply"]),
        "reader": create_api_key(keys_file, "reader", ["shop"], ["read"], agent="张伟"),
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
    app = create_app(channel=channel)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as http:
        team = Team(master, channel, http, keys)
        team.account.fill(conversations=4, messages_per_conversation=2, contents=1, comments_per_content=1)
        sync = SyncClient(channel, "test-worker", token=token_for("test-worker"))
        await sync.open({"shop": 0})
        await sync.push_snapshot("shop", 1, team.account.account, team.account.batch)
        await sync.close()
        try:
            yield team
        finally:  # the master and channel of the end (a test may have restarted the master)
            await team.channel.close(grace=None)
            await team.master.stop()


def _info(response: httpx.Response) -> dict[str, Any]:
    """The ErrorInfo detail of an answer."""
    details = response.json()["details"]
    return next(d for d in details if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")


def _field(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    return str(response.json()["details"][0]["field_violations"][0]["field"])


async def test_claims_assignment_and_the_lists_of_mine_and_nobodys(team: Team) -> None:
    first, second, *_ = [c.conversation_id for c in team.account.batch.conversations]
    base = f"/api/im/conversations/{first}"
    claimed = await team.call("fang", "POST", f"{base}/claim", {})
    assert claimed.status_code == 200 and claimed.json()["data"]["conversation"]["assignee"] == "王芳"
    refused = await team.call("lei", "POST", f"{base}/claim", {})
    assert refused.status_code == 400, refused.text
    info = _info(refused)
    assert info["reason"] == "CLAIMED" and info["metadata"] == {"assignee": "王芳"}
    assert "王芳" in refused.json()["status_msg"]
    # A program (a key naming nobody) cannot claim; a read-only key cannot touch the handling.
    assert (await team.call("bot", "POST", f"{base}/claim", {})).status_code == 403
    assert (await team.call("reader", "POST", f"/api/im/conversations/{second}/claim", {})).status_code == 403

    assert (await team.call("fang", "PUT", f"/api/im/conversations/{second}/assignee", {"assignee": "李雷"})).is_success
    mine = (await team.call("lei", "GET", "/api/im/conversations", mine="true")).json()["data"]["conversations"]
    assert [c["conversation_id"] for c in mine] == [second]
    by_fang = (await team.call("lei", "GET", "/api/im/conversations", assignee="王芳")).json()["data"]
    assert [c["conversation_id"] for c in by_fang["conversations"]] == [first]
    nobodys = (await team.call("lei", "GET", "/api/im/conversations", unassigned="true")).json()["data"]
    assert {c["conversation_id"] for c in nobodys["conversations"]}.isdisjoint({first, second})
    assert len(nobodys["conversations"]) == 2

    both = await team.call("lei", "GET", "/api/im/conversations", mine="true", unassigned="true")
    assert _field(both) == "mine"
    assert _field(await team.call("bot", "GET", "/api/im/conversations", mine="true")) == "mine"
    unknown = await team.call("fang", "PUT", f"{base}/assignee", {"assignee": "小明"})
    assert _field(unknown) == "assignee" and "小明" in unknown.json()["status_msg"]


async def test_each_key_says_whose_it_is_and_whom_one_can_assign(team: Team) -> None:
    fang = (await team.http.get("/api/im/me", headers=team.as_("fang"))).json()["data"]
    assert fang["agent"] == "王芳" and fang["key_id"] == "fang" and fang["scopes"] == ["read", "reply"]
    assert fang["account_ids"] == ["shop"] and not fang.get("all_accounts")
    assert fang["agents"] == sorted(["王芳", "李雷", "张伟"])
    bot = (await team.http.get("/api/im/me", headers=team.as_("bot"))).json()["data"]
    assert "agent" not in bot or bot["agent"] == ""


async def test_two_agents_claiming_at_once_over_http(team: Team) -> None:
    for conversation in team.account.batch.conversations:
        path = f"/api/im/conversations/{conversation.conversation_id}/claim"
        answers = await asyncio.gather(
            team.call("fang", "POST", path, {}), team.call("lei", "POST", path, {}), return_exceptions=False
        )
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 400], [a.text for a in answers]
        winner = next(a for a in answers if a.status_code == 200).json()["data"]["conversation"]["assignee"]
        loser = next(a for a in answers if a.status_code == 400)
        assert _info(loser)["metadata"] == {"assignee": winner}


async def test_notes_stay_with_the_team_and_bad_ones_are_refused(team: Team) -> None:
    conversation_id = team.account.batch.conversations[0].conversation_id
    path = f"/api/im/conversations/{conversation_id}/notes"
    added = await team.call("fang", "POST", path, {"text": "老客户，上次退过款"})
    assert added.status_code == 200, added.text
    note = added.json()["data"]["note"]
    assert note["agent"] == "王芳" and note["text"] == "老客户，上次退过款" and note["note_id"]
    assert added.json()["data"]["conversation"]["note_count"] == 1
    listed = (await team.call("lei", "GET", path)).json()["data"]["notes"]
    assert listed == [note]
    assert _field(await team.call("fang", "POST", path, {"text": "字" * 2001})) == "text"
    assert _field(await team.call("fang", "POST", path, {"text": "  "})) == "text"
    assert _field(await team.call("fang", "POST", path, {})) == "text"
    # Nothing of it went to the worker: no reply waits for the account.
    assert await team.master.book.deliverable("shop", session_id=1) == []


async def test_states_and_a_snooze_that_runs_out(team: Team) -> None:
    conversation_id = team.account.batch.conversations[1].conversation_id
    path = f"/api/im/conversations/{conversation_id}"
    assert (await team.call("fang", "PUT", f"{path}/read", {})).is_success
    state = f"{path}/state"
    assert _field(await team.call("fang", "PUT", state, {"thread_state": "THREAD_STATE_SNOOZED"})) == "snoozed_until"
    past = "2020-01-01T00:00:00Z"
    snoozed_past = {"thread_state": "THREAD_STATE_SNOOZED", "snoozed_until": past}
    assert _field(await team.call("fang", "PUT", state, snoozed_past)) == "snoozed_until"
    assert _field(await team.call("fang", "PUT", state, {"thread_state": "THREAD_STATE_UNSPECIFIED"})) == "thread_state"
    done = await team.call("fang", "PUT", state, {"thread_state": "THREAD_STATE_DONE"})
    assert done.json()["data"]["conversation"]["thread_state"] == "done", "the IM profile's short enum names"

    events = ImClient(team.channel).stream_events(
        ev.StreamEventsRequest(account_ids=["shop"], types=[ev.EVENT_TYPE_CONVERSATION_HANDLED]),
        metadata=(("authorization", f"Bearer {team.keys['lei']}"),),
    )
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1.5)
    until = soon.isoformat().replace("+00:00", "Z")
    snoozed = await team.call("fang", "PUT", state, {"thread_state": "snoozed", "snoozed_until": until})
    shown = snoozed.json()["data"]["conversation"]
    assert shown["thread_state"] == "snoozed" and shown["snoozed_until"]
    seen: list[ev.Event] = []
    async with asyncio.timeout(15):
        async for response in events:
            seen.append(response.event)
            if response.event.conversation.thread_state == e.THREAD_STATE_OPEN:
                break
    assert seen[-1].conversation.is_marked_unread, "the snooze ran out: back, and shown unread"
    await events.aclose()  # type: ignore[attr-defined]

    async def back() -> bool:
        got = (await team.call("lei", "GET", path)).json()["data"]["conversation"]
        return bool(got["thread_state"] == "open" and got.get("is_marked_unread"))

    await eventually(back)
    assert (await team.call("lei", "PUT", f"{path}/read", {})).is_success
    after = (await team.call("lei", "GET", path)).json()["data"]["conversation"]
    assert not after.get("is_marked_unread")


async def test_presence_reaches_the_other_agent_and_ends_by_itself(team: Team) -> None:
    conversation_id = team.account.batch.conversations[2].conversation_id
    events = ImClient(team.channel).stream_events(
        ev.StreamEventsRequest(account_ids=["shop"], types=[ev.EVENT_TYPE_PRESENCE]),
        metadata=(("authorization", f"Bearer {team.keys['lei']}"),),
    )
    first = asyncio.ensure_future(anext(aiter(events)))
    # A presence is not kept for who subscribes later: say it (as the console does, every few
    # seconds while the reply box is in use) until the other agent's stream is there to hear it.
    async with asyncio.timeout(10):
        while not first.done():
            path = f"/api/im/conversations/{conversation_id}/presence"
            said = await team.call("fang", "PUT", path, {"is_typing": True})
            assert said.status_code == 200, said.text
            await asyncio.wait({first}, timeout=0.3)
    presence = first.result().event.presence
    await events.aclose()  # type: ignore[attr-defined]
    assert presence.agent == "王芳" and presence.is_typing and presence.conversation_id == conversation_id
    left = presence.expire_time.ToDatetime(datetime.UTC) - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(seconds=1) < left <= datetime.timedelta(seconds=10)
    assert (await team.call("bot", "PUT", f"/api/im/conversations/{conversation_id}/presence", {})).status_code == 403


@pytest.mark.parametrize("who", ["fang", "lei"])
async def test_what_was_acknowledged_survives_a_restart(team: Team, who: str) -> None:
    conversation_id = team.account.batch.conversations[3].conversation_id
    path = f"/api/im/conversations/{conversation_id}"
    assert (await team.call(who, "POST", f"{path}/claim", {})).is_success
    assert (await team.call(who, "POST", f"{path}/notes", {"text": "等仓库回复"})).is_success
    assert (await team.call(who, "PUT", f"{path}/state", {"thread_state": "THREAD_STATE_DONE"})).is_success
    before = (await team.call(who, "GET", path)).json()["data"]["conversation"]
    await team.channel.close(grace=None)
    await team.master.stop()
    team.master = Master(team.master.config)
    port = await team.master.start()
    team.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    app = create_app(channel=team.channel)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as http:
        team.http = http
        after = (await team.call(who, "GET", path)).json()["data"]["conversation"]
        assert after == before
        notes = (await team.call(who, "GET", f"{path}/notes")).json()["data"]["notes"]
        assert [n["text"] for n in notes] == ["等仓库回复"]


async def test_the_inbox_by_thread_and_a_comment_thread_handled_over_http(team: Team) -> None:
    comment = next(c for c in team.account.batch.comments if not c.parent_comment_id)
    listed = (await team.call("fang", "GET", "/api/im/unified-threads")).json()["data"]["threads"]
    kinds = sorted(t["kind"] for t in listed)
    assert kinds == ["comment"] + ["conversation"] * 4, "the IM profile's short enum names"
    base = f"/api/im/discussions/{comment.comment_id}"
    claimed = await team.call("fang", "POST", f"{base}/claim", {})
    assert claimed.status_code == 200, claimed.text
    thread = claimed.json()["data"]["thread"]
    assert (thread["kind"], thread["thread_id"], thread["assignee"]) == (
        "comment",
        comment.comment_id,
        "王芳",
    )
    assert claimed.json()["data"].get("conversation") is None
    refused = await team.call("lei", "POST", f"{base}/claim", {})
    assert refused.status_code == 400 and _info(refused)["metadata"] == {"assignee": "王芳"}
    noted = await team.call("fang", "POST", f"{base}/notes", {"text": "差评，先私信安抚"})
    assert noted.status_code == 200 and noted.json()["data"]["thread"]["note_count"] == 1
    notes = (await team.call("lei", "GET", f"{base}/notes")).json()["data"]["notes"]
    assert [n["text"] for n in notes] == ["差评，先私信安抚"]
    done = await team.call("fang", "PUT", f"{base}/state", {"thread_state": "THREAD_STATE_DONE"})
    assert done.json()["data"]["thread"]["thread_state"] == "done"
    mine = (await team.call("fang", "GET", "/api/im/unified-threads", mine="true")).json()["data"]["threads"]
    assert [(t["thread_id"], t["thread_state"]) for t in mine] == [(comment.comment_id, "done")]
    only_comments = await team.call("lei", "GET", "/api/im/unified-threads", kinds="THREAD_KIND_COMMENT")
    assert [t["thread_id"] for t in only_comments.json()["data"]["threads"]] == [comment.comment_id]
    # A conversation is answered as before, with the thread beside it.
    conversation_id = team.account.batch.conversations[0].conversation_id
    marked = await team.call("lei", "PUT", f"/api/im/conversations/{conversation_id}/unread", {})
    assert marked.json()["data"]["conversation"]["is_marked_unread"]
    assert marked.json()["data"]["thread"]["kind"] == "conversation"

    # Bad requests name the field.
    assert _field(await team.call("fang", "GET", "/api/im/unified-threads", kinds="THREAD_KIND_UNSPECIFIED")) == "kinds"
    assert _field(await team.call("fang", "GET", "/api/im/unified-threads", cursor="bm90LWEtY3Vyc29y")) == "cursor"
    both = await team.call("fang", "PUT", f"{base}/unread", {"conversation_id": conversation_id})
    assert _field(both) == "comment_id"
    assert (await team.call("fang", "POST", "/api/im/discussions/no-such-comment/claim", {})).status_code == 404


async def test_presence_in_a_comment_thread_names_its_comment(team: Team) -> None:
    comment = next(c for c in team.account.batch.comments if not c.parent_comment_id)
    said = await team.call("fang", "PUT", f"/api/im/discussions/{comment.comment_id}/presence", {"is_typing": True})
    assert said.status_code == 200, said.text
    presence = said.json()["data"]["presence"]
    assert presence["comment_id"] == comment.comment_id and not presence.get("conversation_id")


async def test_a_snoozed_comment_thread_is_woken_by_the_master(team: Team) -> None:
    comment = next(c for c in team.account.batch.comments if not c.parent_comment_id)
    events = ImClient(team.channel).stream_events(
        ev.StreamEventsRequest(account_ids=["shop"], types=[ev.EVENT_TYPE_THREAD_HANDLED]),
        metadata=(("authorization", f"Bearer {team.keys['lei']}"),),
    )
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1.5)
    until = soon.isoformat().replace("+00:00", "Z")
    path = f"/api/im/discussions/{comment.comment_id}/state"
    snoozed = await team.call("fang", "PUT", path, {"thread_state": "snoozed", "snoozed_until": until})
    assert snoozed.json()["data"]["thread"]["thread_state"] == "snoozed", snoozed.text
    seen: list[ev.Event] = []
    async with asyncio.timeout(15):
        async for response in events:
            seen.append(response.event)
            if response.event.thread.thread_state == e.THREAD_STATE_OPEN:
                break
    await events.aclose()  # type: ignore[attr-defined]
    woken = seen[-1].thread
    assert woken.thread_id == comment.comment_id and woken.is_marked_unread, "recorded by the master's clock"
