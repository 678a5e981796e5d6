"""What an operator sees of the demo's processes (simulator, master, gateway, worker in
Chromium): each one's /metrics through a sync, a read, a partial crawl and a failed reply; a
real Prometheus scraping them, with the repository's alert rules, firing when the worker
stops; JSON logs one object a line with the request id on both sides and no message text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from . import waiting
from .conftest import token_for
from .demo_processes import DemoProcesses
from .helpers.prometheus import Prometheus

pytestmark = pytest.mark.e2e

SECRET_TEXT = "SECRET-REPLY-7c1e"


async def eventually(check: Callable[[], Any], timeout: float = 90.0) -> Any:
    return await waiting.eventually(
        check, timeout=timeout, every=0.3, ignoring=(httpx.HTTPError, KeyError, IndexError, TypeError, StopIteration)
    )


async def scrape(http: httpx.AsyncClient, url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = (await http.get(url)).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum over the series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def metrics_address(line: str) -> str:
    found = re.search(r"metrics listening on http://(\S+)/metrics", line)
    assert found, line
    return found.group(1)


async def test_metrics_logs_and_alerts_of_the_demo_processes_in_a_real_prometheus(tmp_path: Path) -> None:
    json_logs = ["--log-format", "json"]
    demo = DemoProcesses(
        tmp_path,
        master_args=["--metrics-listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"), *json_logs],
        gateway_args=["--metrics-on-port", *json_logs],
        worker_args=["--metrics-listen", "127.0.0.1:0", *json_logs],
        merge_stderr=True,
    )
    prometheus: Prometheus | None = None
    try:
        await demo.start()
        assert demo.master and demo.gateway and demo.worker
        master_metrics = metrics_address(await demo.master.line_with("metrics listening on"))
        worker_metrics = metrics_address(await demo.worker.line_with("metrics listening on"))
        prometheus = Prometheus(
            tmp_path / "prometheus",
            {
                "imsync-master": [(master_metrics, "/metrics")],
                "imsync-gateway": [(demo.gateway_address, "/metrics")],
                "imsync-worker": [(worker_metrics, "/metrics")],
            },
        ).start()

        async with (
            httpx.AsyncClient(base_url=demo.base, timeout=30) as http,
            httpx.AsyncClient(base_url=demo.platform, timeout=10) as platform,
            httpx.AsyncClient(timeout=10) as plain,
        ):

            async def whole() -> bool:
                users = (await http.get("/api/im/accounts")).json()["data"]["users"]
                return len(users) == 2 and all(u["crawl_state"] == "whole" for u in users)

            await eventually(whole)  # a sync

            # Prometheus scrapes all three (before anything happens that it should see).
            async def scraped() -> bool:
                up = await prometheus.query(plain, "up")
                return {r["metric"]["job"] for r in up if r["value"][1] == "1"} == {
                    "imsync-master",
                    "imsync-gateway",
                    "imsync-worker",
                }

            await eventually(scraped, timeout=30)

            # A read, with the caller's request id.
            read = await http.get(
                "/api/im/conversations", params={"account_id": "shop-0"}, headers={"X-Request-Id": "read-e2e-1"}
            )
            assert read.status_code == 200 and read.headers["x-request-id"] == "read-e2e-1"

            # A failed reply: under a work the platform made private.
            comment = (await http.get("/api/im/discussions", params={"account_id": "shop-0"})).json()["data"][
                "discussions"
            ][0]
            await platform.post(
                "/__sim/private",
                json={"uid": demo.uid_of("shop-0"), "item_id": comment["content_id"], "is_private": True},
            )
            sent = await http.post(
                "/api/im/replies",
                headers={"X-Request-Id": "reply-e2e-1"},
                json={
                    "request_id": "failing-reply",
                    "reply_to_comment": {"comment_id": comment["comment_id"], "text": SECRET_TEXT},
                },
            )
            assert sent.status_code == 200, sent.text

            async def failed() -> bool:
                reply = (await http.get("/api/im/replies/failing-reply")).json()["data"]["reply"]
                return bool(reply["state"] == "failed")

            await eventually(failed)

            # A partial crawl: one endpoint of the platform answers garbage.
            await platform.post("/__sim/faults", json={"broken": "/aweme/v1/web/notice/"})

            async def partial() -> bool:
                user = (await http.get("/api/im/accounts/shop-1")).json()["data"]["user"]
                return bool(user["crawl_state"] == "partial")

            await eventually(partial)

            # Each process counted what it did.
            master = await scrape(plain, f"http://{master_metrics}/metrics")
            assert value(master, "imsync_sync_versions_total", kind="snapshot", outcome="applied") >= 2
            assert value(master, "imsync_sync_ack_seconds_count") >= 2
            assert value(master, "imsync_sync_received_entities_total", account="shop-0") > 0
            assert value(master, "imsync_sync_received_bytes_total", account="shop-1") > 0
            assert value(master, "imsync_journal_commit_seconds_count") > 0
            assert (
                value(master, "imsync_grpc_server_handled_total", grpc_method="ListConversations", grpc_code="OK") >= 1
            )
            assert value(master, "imsync_grpc_server_handling_seconds_count", grpc_method="SendReply") >= 1
            assert value(master, "imsync_replies_total", state="failed", reason="reply_blocked") >= 1
            assert value(master, "imsync_account_crawl_state", account="shop-1", state="partial") == 1
            assert value(master, "imsync_account_login_state", account="shop-0", state="logged_in") == 1
            assert value(master, "imsync_account_worker_online", account="shop-0") == 1
            assert value(master, "imsync_health_serving") == 1

            gateway = await scrape(plain, f"{demo.base}/metrics")
            assert (
                value(gateway, "imsync_http_requests_total", route="/api/im/conversations", method="GET", code="200")
                >= 1
            )
            assert value(gateway, "imsync_http_requests_total", route="/api/im/replies", method="POST", code="200") == 1
            assert value(gateway, "imsync_http_request_seconds_count", route="/api/im/replies/{request_id}") >= 1

            async def kept_answers() -> bool:  # a read again, answered from the gateway's cache
                await http.get("/api/im/conversations", params={"account_id": "shop-0"})
                return (
                    value(await scrape(plain, f"{demo.base}/metrics"), "imsync_cache_answers_total", result="hit") >= 1
                )

            await eventually(kept_answers, timeout=30)

            worker = await scrape(plain, f"http://{worker_metrics}/metrics")
            assert value(worker, "imsync_worker_crawls_total", account="shop-0", outcome="whole") >= 1
            assert value(worker, "imsync_worker_crawls_total", account="shop-1", outcome="partial") >= 1
            assert value(worker, "imsync_worker_crawl_seconds_count", account="shop-1") >= 2
            assert value(worker, "imsync_worker_commands_total", action="reply_to_comment", outcome="failed") == 1
            assert value(worker, "imsync_worker_login_state", account="shop-0", state="logged_in") == 1
            assert value(worker, "imsync_worker_master_connected") == 1
            assert value(worker, "imsync_worker_browser_memory_bytes") > 50 * 2**20

            # No id of a message, a comment or a conversation, and no text, in any label.
            labels = {v for samples in (master, gateway, worker) for (_, ls) in samples for _, v in ls}
            assert comment["comment_id"] not in labels and SECRET_TEXT not in labels

            # Prometheus has the series, and the alerts fire.
            for expression in (
                'imsync_replies_total{state="failed"}',
                'imsync_worker_crawls_total{outcome="partial"}',
                'imsync_http_requests_total{route="/api/im/conversations"}',
            ):
                assert await prometheus.query(plain, expression), expression

            async def firing(name: str, **labels: str) -> bool:
                return any(
                    a["labels"]["alertname"] == name
                    and a["state"] == "firing"
                    and all(a["labels"].get(k) == v for k, v in labels.items())
                    for a in await prometheus.alerts(plain)
                )

            await eventually(lambda: firing("ImsyncCrawlsPartial", account="shop-1"), timeout=30)
            await eventually(lambda: firing("ImsyncRepliesFailing"), timeout=30)

            # The worker stops: its accounts go offline on the master, and the alert fires.
            await platform.post("/__sim/faults", json={"broken": ""})
            await demo.worker.stop()
            await eventually(lambda: firing("ImsyncWorkerOffline", account="shop-0"), timeout=30)
            assert not await firing("ImsyncMasterDown")

        # Logs: every line a process logged is one JSON object; the request ids went with
        # their requests; no reply text, no worker token.
        entries: dict[str, list[dict[str, Any]]] = {}
        for name, child in (("master", demo.master), ("gateway", demo.gateway), ("worker", demo.worker)):
            assert child is not None
            lines = [line for line in child.output if not line.startswith("imsync ")]
            unparsed = [line for line in lines if not _is_json(line)]
            assert not unparsed, (name, unparsed[:5])
            entries[name] = [json.loads(line) for line in lines]
            text = "\n".join(child.output)
            assert SECRET_TEXT not in text and token_for("worker-a") not in text, name
        access = [e for e in entries["gateway"] if e["logger"] == "imsync.access"]
        assert any(e.get("request_id") == "read-e2e-1" and "/api/im/conversations" in e["message"] for e in access)
        assert any(e.get("request_id") == "reply-e2e-1" for e in entries["master"]), "the master's line for the reply"
        assert any(e.get("request_id") == "reply-e2e-1" for e in access)
    finally:
        if prometheus is not None:
            prometheus.close()
        await demo.stop()
