"""The team's quick replies: kept by either backend (names unique even when two saves
race), through a journaled restart, filled for a conversation or a comment, and refused
with the field named when they are wrong."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import events_pb2_grpc
from services.master.memory.durability import open_data_dir
from services.master.memory.store import MemoryStore
from services.master.model import templates
from services.master.model.commands import CommandBook
from services.master.model.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted
from services.master.model.store import Store
from services.master.model.written import check_written

from .conftest import StoreFactory
from .test_team_api import Team, _field, team

__all__ = ["team"]  # the fixture


def _template(template_id: str, name: str, text: str = "您好 {customer_name}") -> e.Template:
    template = e.Template(template_id=template_id, name=name, text=text, updated_by="王芳")
    template.update_time.FromNanoseconds(time.time_ns())
    return template


async def test_templates_are_kept_renamed_and_removed(new_store: StoreFactory) -> None:
    store: Store = new_store()
    assert await store.list_templates() == []
    await store.save_template(_template("t1", "发货"), create=True)
    await store.save_template(_template("t2", "退款", "{customer_name}，退款已处理"), create=True)
    with pytest.raises(AlreadyExists) as taken:
        await store.save_template(_template("t3", "发货"), create=True)
    assert taken.value.field == "name"
    with pytest.raises(AlreadyExists):
        await store.save_template(_template("t1", "别的"), create=True)
    # Renamed, its old name is free again.
    await store.save_template(_template("t1", "发货时间"), create=False)
    await store.save_template(_template("t3", "发货"), create=True)
    with pytest.raises(NotFound):
        await store.save_template(_template("nope", "x"), create=False)
    assert sorted(t.name for t in await store.list_templates()) == sorted(["发货时间", "退款", "发货"])
    await store.delete_template("t2")
    with pytest.raises(NotFound):
        await store.delete_template("t2")
    assert {t.template_id for t in await store.list_templates()} == {"t1", "t3"}


async def test_two_saves_of_one_name_at_once_keep_one(new_store: StoreFactory) -> None:
    store = new_store()
    outcomes = await asyncio.gather(
        *(store.save_template(_template(f"t{i}", "同名"), create=True) for i in range(6)), return_exceptions=True
    )
    assert sum(isinstance(o, e.Template) for o in outcomes) == 1
    assert all(isinstance(o, AlreadyExists) for o in outcomes if not isinstance(o, e.Template))
    assert [t.name for t in await store.list_templates()] == ["同名"]


async def test_the_team_has_a_bounded_number_of_templates(new_store: StoreFactory) -> None:
    store = new_store()
    for index in range(templates.MAX_TEMPLATES):
        await store.save_template(_template(f"t{index}", f"n{index}"), create=True)
    with pytest.raises(ResourceExhausted):
        await store.save_template(_template("one-more", "one more"), create=True)


async def test_templates_survive_a_restart_of_a_journaled_master(tmp_path: Path) -> None:
    store, book = MemoryStore(), CommandBook()
    recovery = open_data_dir(tmp_path, store, book)
    recovery.journal.start()
    await store.save_template(_template("t1", "发货"), create=True)
    await store.save_template(_template("t2", "退款"), create=True)
    await store.save_template(_template("t1", "发货时间", "{agent_name} 为您服务"), create=False)
    await store.delete_template("t2")
    persisted = store.persisted()
    assert persisted is not None
    await persisted
    await recovery.journal.close()
    again = MemoryStore()
    recovery = open_data_dir(tmp_path, again, CommandBook())
    try:
        assert recovery.problems == []
        assert [(t.template_id, t.name, t.text) for t in await again.list_templates()] == [
            ("t1", "发货时间", "{agent_name} 为您服务")
        ]
    finally:
        await recovery.journal.close()


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("", "您好", "name"),
        ("x" * 41, "您好", "name"),
        ("ok", "", "text"),
        ("ok", "字" * 2001, "text"),
        ("ok", "您好 {customer}", "text"),
        ("ok", "{order_id} 已发货", "text"),
        ("ok", "您好\x1b[31m", "text"),
    ],
)
def test_a_bad_template_is_refused_naming_the_field(name: str, text: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        templates.check(name, text)
    assert refused.value.field == field


def test_a_name_from_the_platform_is_filled_in_without_control_characters() -> None:
    """A customer's name holding a control character would make the rendered reply refused
    (replies take none); the name is filled in without it, the rest as it is."""
    text = "{customer_name}您好\n{work_title}"
    rendered = templates.render(text, {"customer_name": "小\x00美\x1b[31m", "work_title": "新品\u0085"})
    assert rendered == "小美[31m您好\n新品"
    assert check_written(rendered, "send_message.text", 2000) == rendered


async def test_templates_through_the_api(team: Team) -> None:
    http = team.http
    fang = team.as_("fang")
    created = await http.post(
        "/api/im/templates",
        json={"name": "问候", "text": "{customer_name}您好，我是{account_name}的{agent_name}"},
        headers=fang,
    )
    assert created.status_code == 200, created.text
    template = created.json()["data"]["template"]
    assert template["updated_by"] == "王芳" and template["template_id"]
    bad = await http.post("/api/im/templates", json={"name": "坏", "text": "订单 {order_id}"}, headers=fang)
    assert _field(bad) == "text" and "{order_id}" in bad.json()["status_msg"]
    twice = await http.post("/api/im/templates", json={"name": "问候", "text": "x"}, headers=fang)
    assert twice.status_code == 409, twice.text
    # A read-only key may not use them.
    assert (await http.get("/api/im/templates", headers=team.as_("reader"))).status_code == 403

    found = (await http.get("/api/im/templates", params={"query": "您好"}, headers=team.as_("lei"))).json()["data"]
    assert [t["name"] for t in found["templates"]] == ["问候"]
    conversation = team.account.batch.conversations[0]
    path = f"/api/im/templates/{template['template_id']}/render"
    rendered = await http.post(
        path, json={"account_id": "shop", "conversation_id": conversation.conversation_id}, headers=team.as_("lei")
    )
    assert rendered.status_code == 200, rendered.text
    name = team.account.account.user_name
    expected = f"{conversation.participant.user_name}您好，我是{name}的李雷"
    assert rendered.json()["data"]["text"] == expected

    work = await http.post("/api/im/templates", json={"name": "作品", "text": "感谢关注《{work_title}》"}, headers=fang)
    work_id = work.json()["data"]["template"]["template_id"]
    comment = team.account.batch.comments[0]
    title = next(c.title for c in team.account.batch.contents if c.content_id == comment.content_id)
    on_comment = await http.post(
        f"/api/im/templates/{work_id}/render", json={"comment_id": comment.comment_id}, headers=fang
    )
    assert on_comment.json()["data"]["text"] == f"感谢关注《{title}》"
    in_conversation = await http.post(
        f"/api/im/templates/{work_id}/render",
        json={"conversation_id": conversation.conversation_id},
        headers=fang,
    )
    assert _field(in_conversation) == "target", "a private conversation is on no work"
    assert (await http.delete(f"/api/im/templates/{work_id}", headers=fang)).is_success
    gone = await http.post(f"/api/im/templates/{work_id}/render", json={"comment_id": comment.comment_id}, headers=fang)
    assert gone.status_code == 404


async def test_a_template_change_reaches_the_team_not_a_read_only_key(team: Team) -> None:
    stub = events_pb2_grpc.EventServiceStub(team.channel)
    request = ev.StreamEventsRequest(types=[ev.EVENT_TYPE_TEMPLATE_CHANGED])
    calls = {
        who: stub.StreamEvents(request, metadata=(("authorization", f"Bearer {team.keys[who]}"),))
        for who in ("lei", "reader")
    }
    for call in calls.values():
        await call.initial_metadata()  # subscribed
    created = await team.http.post("/api/im/templates", json={"name": "晚安", "text": "晚安"}, headers=team.as_("fang"))
    assert created.is_success
    reads = {who: asyncio.ensure_future(call.read()) for who, call in calls.items()}
    await asyncio.wait({reads["lei"]}, timeout=10)
    await asyncio.wait({reads["reader"]}, timeout=0.5)
    try:
        assert reads["lei"].done() and reads["lei"].result().event.template.name == "晚安"  # type: ignore[attr-defined]
        assert not reads["reader"].done(), "a read-only key hears nothing of templates"
    finally:
        for call in calls.values():
            call.cancel()
        await asyncio.gather(*reads.values(), return_exceptions=True)
