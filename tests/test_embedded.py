"""The gateway's response cache, embedded in the master's process and in a process of its
own (kept exact by the master's invalidations): repeated reads come without a call, and
a read after an acknowledged sync, a mark-read or a pin never returns the older state."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from imsync.v1 import unified_messages_pb2 as uni
from services.common.sample import SampleAccount
from services.embedded import embedded_app
from services.gateway.app import Gateway, create_app
from services.gateway.cache import ResponseCache
from services.master.model.errors import PermissionDenied

from .conftest import NOW, Master, push_all


class Embedded:
    def __init__(
        self,
        cached: httpx.AsyncClient,
        uncached: httpx.AsyncClient,
        cache: ResponseCache,
        reference: httpx.AsyncClient | None = None,
    ) -> None:
        self.cached, self.uncached, self.cache = cached, uncached, cache
        # Embedded only: a gateway calling the master over gRPC, which encodes every answer
        # from its messages; the embedded one joins pages from kept encodings instead.
        self.reference = reference


@pytest_asyncio.fixture(params=["embedded", "separate"])
async def embedded(master: Master, request: pytest.FixtureRequest) -> AsyncIterator[Embedded]:
    """A gateway keeping answers, and one that keeps none; the first in the master's process
    (calling its servicers), or calling it over gRPC as a gateway process does."""
    if request.param == "embedded":
        app, cache = embedded_app(master.process)
        bare, _ = embedded_app(master.process, cache=False, encoded_bytes=64 * 1024)
        reference = create_app(channel=master.channel)
        assert cache is not None
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://embedded.test") as cached,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=bare), base_url="http://embedded.test") as uncached,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=reference), base_url="http://g.test") as encoding,
        ):
            yield Embedded(cached, uncached, cache, encoding)
        return
    app = create_app(channel=master.channel, watch=True)
    bare = create_app(channel=master.channel)
    gateway: Gateway = app.state.gateway
    async with (
        gateway.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as cached,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=bare), base_url="http://gateway.test") as uncached,
    ):
        assert gateway.watch is not None and gateway.cache is not None
        await asyncio.wait_for(gateway.watch.connected.wait(), 5)
        yield Embedded(cached, uncached, gateway.cache)


async def test_repeated_reads_are_answered_from_the_cache_with_etags(
    master: Master, embedded: Embedded, accounts: list[SampleAccount]
) -> None:
    await push_all(master, accounts)
    url = f"/api/im/conversations?account_id={accounts[0].account_id}&count=5"
    first = await embedded.cached.get(url)
    hits = embedded.cache.hits
    second = await embedded.cached.get(url)
    assert second.status_code == 200 and second.content == first.content
    assert embedded.cache.hits == hits + 1
    # A kept answer is sent straight in ASGI, with the very headers of the computed one
    # (but its own request id).
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert {**second.headers, "x-request-id": ""} == {**first.headers, "x-request-id": ""}
    etag = second.headers["etag"]
    again = await embedded.cached.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    changed = await embedded.cached.get(url, headers={"If-None-Match": '"something else"'})
    assert changed.status_code == 200
    # A read made anew answers If-None-Match as a kept one does, with the same headers.
    fresh = await embedded.uncached.get(url, headers={"If-None-Match": etag})
    assert fresh.status_code == 304 and fresh.content == b""
    assert {**fresh.headers, "x-request-id": ""} == {**again.headers, "x-request-id": ""}
    made = await embedded.uncached.get(url)
    assert {**made.headers, "x-request-id": ""} == {**first.headers, "x-request-id": ""}
    # Errors are not kept: an unknown account is 404 every time, computed every time.
    assert (await embedded.cached.get("/api/im/conversations?account_id=nobody")).status_code == 404


async def test_a_read_after_an_acknowledged_change_never_returns_the_older_state(
    master: Master, embedded: Embedded, accounts: list[SampleAccount]
) -> None:
    """Random syncs, marks, pins and reads; every cached read equals the uncached one."""
    sync = await push_all(master, accounts)
    versions = {account.account_id: 1 for account in accounts}
    rng = random.Random(5)
    urls = [
        "/api/im/accounts",
        "/api/im/conversations?account_id={a}&count=5",
        "/api/im/conversations?account_id={a}&is_pinned=true",
        "/api/im/messages?account_id={a}&count=7",
        "/api/im/unified-messages?account_id={a}&count=6",
        "/api/im/unified-messages/stats?account_id={a}",
        "/api/im/contents?account_id={a}",
        "/api/im/discussions?account_id={a}&count=4",
    ]
    for step in range(120):
        account = rng.choice(accounts)
        a = account.account_id
        action = rng.random()
        if action < 0.2:
            account.grow(NOW + 1000 + step)
            versions[a] += 1
            assert await sync.push_snapshot(a, versions[a], account.account, account.batch) == versions[a]
        elif action < 0.35:
            unread = await master.im.list_unified_messages(
                uni.ListUnifiedMessagesRequest(account_id=a, is_read=False, count=20)
            )
            if unread.messages:
                item = rng.choice(unread.messages).id
                response = await embedded.cached.put(f"/api/im/unified-messages/{item}/read", json={"account_id": a})
                assert response.status_code == 200, response.text
        elif action < 0.45:
            conversation = rng.choice(account.batch.conversations).conversation_id
            method = rng.choice(["PUT", "DELETE"])
            if method == "PUT":
                response = await embedded.cached.put(
                    f"/api/im/conversations/{conversation}/pin", json={"account_id": a}
                )
            else:
                response = await embedded.cached.delete(f"/api/im/conversations/{conversation}/pin?account_id={a}")
            assert response.status_code == 200, response.text
        for url in rng.sample(urls, 3):
            path = url.format(a=a)
            cached, fresh = await embedded.cached.get(path), await embedded.uncached.get(path)
            assert cached.status_code == fresh.status_code == 200, (path, cached.text)
            assert cached.content == fresh.content, f"step {step}: {path} served an older state"
            if embedded.reference is not None:
                # The page joined from kept encodings is the page encoded from messages.
                encoded = await embedded.reference.get(path)
                assert fresh.json() == encoded.json(), f"step {step}: {path}"
    assert embedded.cache.hits > 50, "most reads repeat an unchanged account's page"


async def test_every_hit_is_authorized_as_a_call_would_be(
    master: Master, embedded: Embedded, accounts: list[SampleAccount]
) -> None:
    await push_all(master, accounts)
    url = f"/api/im/conversations?account_id={accounts[0].account_id}"
    await embedded.cached.get(url)
    allowed = embedded.cache.authorize
    refused: list[object] = []

    def refuse(metadata: object) -> object:
        refused.append(metadata)
        raise PermissionDenied("revoked")

    embedded.cache.authorize = refuse
    hits = embedded.cache.hits
    # A caller the keys now refuse is not answered from the cache: the call decides (this
    # master has no API keys file, so the call itself lets it through).
    assert (await embedded.cached.get(url)).status_code == 200
    assert refused and embedded.cache.hits == hits
    embedded.cache.authorize = allowed
    await embedded.cached.get(url)
    assert embedded.cache.hits == hits + 1


async def test_reads_racing_syncs_never_see_less_than_what_was_acknowledged_before_they_began(
    master: Master, embedded: Embedded, accounts: list[SampleAccount]
) -> None:
    """Syncs and reads at once: a read begun after an Ack (however many reads of the same
    page are in flight and being kept meanwhile) holds at least what that Ack covered."""
    sync = await push_all(master, accounts)
    account = accounts[0]
    a = account.account_id
    url = f"/api/im/messages?account_id={a}&count=1"
    acknowledged = {"newest": ""}
    done = asyncio.Event()

    async def write() -> None:
        for version in range(2, 40):
            conversation = account.batch.conversations[version % len(account.batch.conversations)]
            newest = account.add_message(conversation, NOW + 100_000 + version, inbound=True).message_id
            assert await sync.push_snapshot(a, version, account.account, account.batch) == version
            acknowledged["newest"] = newest
            await asyncio.sleep(0)
        done.set()

    async def read(client: httpx.AsyncClient) -> int:
        reads = 0
        while not done.is_set():
            expected = acknowledged["newest"]
            response = await client.get(url)
            assert response.status_code == 200, response.text
            if expected:
                newest = response.json()["data"]["messages"][0]["message_id"]
                # Message ids grow with time here: the newest listed is that one or later.
                assert int(newest) >= int(expected), "a read after an Ack returned the older state"
            reads += 1
            await asyncio.sleep(0)  # a hit may never wait: let the writer run
        return reads

    writer = asyncio.create_task(write())
    try:
        # Kept answers, and pages joined from kept encodings.
        counts = await asyncio.gather(*(read(client) for client in [embedded.cached] * 3 + [embedded.uncached] * 2))
        await writer
    finally:
        writer.cancel()
    assert sum(counts) > 40


async def test_a_hit_checks_the_request_headers_as_a_miss_does(
    master: Master, embedded: Embedded, accounts: list[SampleAccount]
) -> None:
    """grpc-gateway checks every request's headers before answering it; a kept answer is no
    reason to skip that (a bad Grpc-Timeout is 400 on a hit as on a miss)."""
    await push_all(master, accounts)
    url = f"/api/im/conversations?account_id={accounts[0].account_id}"
    await embedded.cached.get(url)
    hits = embedded.cache.hits
    assert (await embedded.cached.get(url)).status_code == 200 and embedded.cache.hits == hits + 1
    bad: list[list[tuple[bytes, bytes]]] = [
        [(b"grpc-timeout", b"bogus")],
        [(b"grpc-metadata-te", b"x")],
        [(b"grpc-metadata-x", "caf\u00e9".encode())],
        [(b"authorization", b"Bearer a"), (b"grpc-metadata-authorization", b"Bearer b")],
    ]
    for headers in bad:
        for client in (embedded.cached, embedded.uncached):
            answer = await client.get(url, headers=headers)
            assert answer.status_code == 400, (headers, answer.text)
    weak = await embedded.cached.get(
        url, headers={"If-None-Match": "W/" + (await embedded.cached.get(url)).headers["etag"]}
    )
    assert weak.status_code == 304, "a weak ETag matches a kept answer too"


async def test_a_page_read_answered_before_routing_is_the_routes_answer(
    master: Master, accounts: list[SampleAccount]
) -> None:
    """The embedded gateway answers a plain GET of a page (no deadline, no metadata to pass
    on) straight by the master's in-process read (gateway/reads.py): its status, body and
    ETag are exactly those the routes give the same request, errors included."""
    await push_all(master, accounts)
    app, _ = embedded_app(master.process, cache=False)
    gateway: Gateway = app.state.gateway
    routed: list[str] = []
    handle = gateway._handle

    async def counting(route, variables, request, profile, raw_path):  # type: ignore[no-untyped-def]
        routed.append(raw_path)
        return await handle(route, variables, request, profile, raw_path)

    gateway._handle = counting  # type: ignore[method-assign]
    a = accounts[0].account_id
    conversation = accounts[0].batch.conversations[0].conversation_id
    urls = [
        f"/api/im/conversations?account_id={a}&count=3",
        f"/api/im/conversations?account_id={a}&count=2&is_pinned=false",
        f"/api/im/conversations/{conversation}/messages?account_id={a}&count=4",
        f"/api/im/unified-messages?account_id={a}&count=5",
        # Refused, each naming why: no such account, a bad value, an unknown parameter,
        # no account, a malformed cursor.
        "/api/im/conversations?account_id=nobody",
        f"/api/im/conversations?account_id={a}&status=7",
        f"/api/im/unified-messages?account_id={a}&colour=red",
        "/api/im/conversations",
        f"/api/im/conversations?account_id={a}&cursor=%%%",
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://embedded.test") as client:
        first = await client.get(urls[0])
        urls.append(f"/api/im/conversations?account_id={a}&count=3&cursor={first.json()['data']['cursor']}")
        for url in urls:
            routed.clear()
            direct = await client.get(url)
            assert not routed, f"{url}: left to the routes"
            via_routes = await client.get(url, headers={"Grpc-Timeout": "10S"})
            assert routed, f"{url}: a request with a deadline is the routes'"
            assert (direct.status_code, direct.content) == (via_routes.status_code, via_routes.content), url
            assert direct.headers.get("etag") == via_routes.headers.get("etag"), url
            if direct.status_code == 200:
                again = await client.get(url, headers={"If-None-Match": direct.headers["etag"]})
                assert again.status_code == 304, url
