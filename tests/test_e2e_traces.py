"""One trace per request, across the gateway, the master and the worker: a read's spans, and a
reply's from its REST call to the worker's click on the platform's page (Chromium, against
the simulator), recorded by an in-memory exporter. Everything runs in this process so that
one exporter sees every span; the calls between the parts are the real ones (HTTP into the
gateway's app, gRPC over loopback to the master, the SyncData stream to the worker)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services import processes
from services.gateway.app import create_app
from services.sim.server import uids_of, worker_accounts
from services.worker.config import load_worker_config
from services.worker.main import run_worker

from . import waiting
from .conftest import Master, token_for

pytestmark = pytest.mark.e2e

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans finished during the test. The tracer provider is the process's (OpenTelemetry
    sets it once); this exporter is added to it once."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def chain(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    """The span's name and its ancestors', nearest first."""
    names = []
    current: ReadableSpan | None = span
    while current is not None:
        names.append(current.name)
        parent = current.parent
        current = by_id.get(parent.span_id) if parent is not None else None
    return names


async def test_a_read_and_a_reply_are_each_one_trace_from_rest_to_the_platform_click(
    tmp_path: Path, master: Master, spans: InMemorySpanExporter
) -> None:
    sim = await processes.start(["sim", "--listen", "127.0.0.1:0", "--accounts", "1", "--rate", "0"])
    config = tmp_path / "worker.toml"
    config.write_text(
        f'master = "{master.address}"\nworker_id = "worker-a"\ntoken = "{token_for("worker-a")}"\n'
        "crawl_interval = 2\ncrawl_timeout = 30\n"
        + worker_accounts(sim.address, ["shop-0"], uids_of(sim.ready_line), page_timeout=5, live_chat=False)
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(load_worker_config(config), stop=stop))
    app = create_app(channel=master.channel)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as http:

            async def synced() -> Any:
                found = (await http.get("/api/im/discussions", params={"account_id": "shop-0"})).json()["data"]
                return found["discussions"]

            discussions = await waiting.eventually(synced, timeout=90, every=0.3, ignoring=(KeyError, TypeError))
            comment = next(d for d in discussions if not d["parent_comment_id"])

            # A read: the gateway's span, and the master's under it.
            spans.clear()
            caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            read = await http.get(
                "/api/im/conversations", params={"account_id": "shop-0"}, headers={"traceparent": caller}
            )
            assert read.status_code == 200
            finished = spans.get_finished_spans()
            by_id = {s.context.span_id: s for s in finished}
            served = next(s for s in finished if s.name == "imsync.v1.ConversationService/ListConversations")
            assert chain(served, by_id) == [
                "imsync.v1.ConversationService/ListConversations",
                "GET /api/im/conversations",
            ]
            assert f"{served.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c", "the caller's trace goes on"

            # A reply: REST, the master's SendReply, the worker's command, the clicks on the page.
            spans.clear()
            body = {"request_id": "traced", "reply_to_comment": {"comment_id": comment["comment_id"], "text": "谢谢"}}
            assert (await http.post("/api/im/replies", json=body)).status_code == 200

            async def sent() -> bool:
                reply = (await http.get("/api/im/replies/traced")).json()["data"]["reply"]
                return bool(reply["state"] == "sent")

            await waiting.eventually(sent, timeout=60, every=0.3)
            finished = spans.get_finished_spans()
            by_id = {s.context.span_id: s for s in finished}
            click = next(s for s in finished if s.name == "click reply")
            assert chain(click, by_id) == [
                "click reply",
                "perform reply_to_comment",
                "imsync.v1.ReplyService/SendReply",
                "POST /api/im/replies",
            ]
            trace_ids = {s.context.trace_id for s in finished if s.name in chain(click, by_id)}
            assert len(trace_ids) == 1
            perform = next(s for s in finished if s.name == "perform reply_to_comment")
            assert perform.attributes is not None and perform.attributes["imsync.outcome"] == "COMMAND_OUTCOME_SENT"
            typed = next(s for s in finished if s.name == "type the reply")
            assert chain(typed, by_id)[1] == "perform reply_to_comment"
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
        await sim.stop()
