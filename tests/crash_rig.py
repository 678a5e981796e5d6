"""A master process, a worker engine in this process that remembers what the master
offered, and a person marking items read: the rig of the crash tests (a master killed
with SIGKILL, a Redis killed under two masters)."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from imsync.v1 import contents_pb2 as cnt
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import discussions_pb2 as dis
from imsync.v1 import entities_pb2 as e
from imsync.v1 import messages_pb2 as msg
from imsync.v1 import sync_pb2
from imsync.v1 import templates_pb2 as tpl
from imsync.v1 import threads_pb2 as thr
from imsync.v1 import unified_messages_pb2 as uni
from imsync_client import ImClient, walk
from services import processes
from services.common.sample import SampleAccount
from services.worker.engine_config import EngineConfig
from services.worker.sync_engine import SyncEngine

from .conftest import NOW, token_for, write_tokens
from .sync_harness import crawl_of, crawled_bytes, view_copy

ACCOUNTS = ["shop-a", "shop-b", "shop-c"]
# A channel of its own: gRPC shares connections between channels to one address, and one
# still backing off from the killed master would fail the first call to the new one.
FRESH = [("grpc.use_local_subchannel_pool", 1)]


class WatchedEngine(SyncEngine):
    """An engine that remembers what each Welcome offered, and can kill the master the
    moment an Ack arrives (the moment a lost write would show)."""

    welcomes: list[dict[str, int]]
    kill_on_ack: Callable[[], None] | None = None

    def _on_welcome(self, welcome: sync_pb2.Welcome) -> None:
        self.welcomes.append({granted.account_id: granted.version for granted in welcome.accounts})
        super()._on_welcome(welcome)

    async def _read(self, call: Any) -> None:
        original = call.read

        async def read() -> Any:
            response = await original()
            if self.kill_on_ack is not None and response is not grpc.aio.EOF and response.WhichOneof("kind") == "ack":  # type: ignore[attr-defined]
                kill, self.kill_on_ack = self.kill_on_ack, None
                kill()
            return response

        call.read = read
        await super()._read(call)


@dataclass
class TeamLog:
    """What the team did: the notes acknowledged, and every assignment tried, in order,
    with whether it was acknowledged."""

    notes: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    assigned: dict[tuple[str, str], list[tuple[str, bool]]] = field(default_factory=dict)
    states: dict[tuple[str, str], list[tuple[int, bool]]] = field(default_factory=dict)
    templates: set[str] = field(default_factory=set)
    counter: int = 0

    def allowed_assignees(self, at: tuple[str, str]) -> set[str] | None:
        """What the assignee may be after a crash: the last acknowledged one or any tried
        after it (taken, not yet answered); None when none was acknowledged."""
        return _allowed(self.assigned.get(at, []))

    def allowed_states(self, at: tuple[str, str]) -> set[int] | None:
        return _allowed(self.states.get(at, []))


def _allowed(attempts: list[tuple[Any, bool]]) -> set[Any] | None:
    acknowledged = [index for index, (_, ok) in enumerate(attempts) if ok]
    if not acknowledged:
        return None
    return {value for value, _ in attempts[acknowledged[-1] :]}


async def handled(address: str, log: TeamLog) -> list[str]:
    """What a restarted master lost of the team's acknowledged notes and assignments."""
    lost = []
    async with grpc.aio.insecure_channel(address, options=FRESH) as channel:
        im = ImClient(channel)
        for (account_id, conversation_id), texts in log.notes.items():
            notes = await im.list_conversation_notes(
                thr.ListConversationNotesRequest(account_id=account_id, conversation_id=conversation_id)
            )
            lost += [f"{conversation_id}: {t}" for t in texts - {n.text for n in notes.notes}]
        for at in set(log.assigned) | set(log.states):
            got = (
                await im.get_conversation(conv.GetConversationRequest(account_id=at[0], conversation_id=at[1]))
            ).conversation
            owners, states = log.allowed_assignees(at), log.allowed_states(at)
            if owners is not None and got.assignee not in owners:
                lost.append(f"{at[1]}: assigned to {got.assignee!r}, acknowledged {sorted(owners)}")
            if states is not None and got.thread_state not in states:
                lost.append(f"{at[1]}: state {got.thread_state}, acknowledged {sorted(states)}")
        kept = {t.name for t in (await im.list_templates(tpl.ListTemplatesRequest())).templates}
        lost += [f"template {name!r}" for name in log.templates - kept]
    return lost


class Rig:
    """A master process over a data directory, a worker engine here, and a reading client."""

    def __init__(self, tmp: Path) -> None:
        self.tokens = write_tokens(tmp / "tokens.toml")
        self.data_dir = tmp / "data"
        self.port = 0
        self.master: processes.Child | None = None
        self.samples = {a: SampleAccount(a, seed=i + 21, now=NOW) for i, a in enumerate(ACCOUNTS)}
        for sample in self.samples.values():
            sample.fill(conversations=6, messages_per_conversation=3, contents=3, comments_per_content=3)
        self.engine: WatchedEngine | None = None
        # Set to kill the master the moment the next read mark is acknowledged.
        self.kill_on_mark = False
        self.kill_on_handled = False

    @property
    def address(self) -> str:
        """Where the person reads."""
        return f"127.0.0.1:{self.port}"

    @property
    def worker_target(self) -> str:
        """Where the worker connects (a gRPC target: one address, or several to fail over)."""
        return self.address

    async def start_master(self, port: int | None = None) -> processes.Child:
        listen = f"127.0.0.1:{self.port if port is None else port}"
        args = [
            "master",
            "--listen",
            listen,
            "--retention",
            "none",
            "--data-dir",
            str(self.data_dir),
            "--worker-tokens",
            str(self.tokens),
            "--heartbeat-seconds",
            "0.3",
            "--lease-seconds",
            "1.5",
        ]
        child = await processes.start(args, attempts=20)  # the killed master's port may not be free yet
        if port is None:
            self.master = child
            self.port = int(child.address.rpartition(":")[2])
        return child

    def kill_master(self) -> None:
        assert self.master is not None
        self.master.process.send_signal(signal.SIGKILL)

    def make_engine(self) -> WatchedEngine:
        config = EngineConfig(
            master=self.worker_target,
            worker_id="test-worker",
            token=token_for("test-worker"),
            backoff_initial=0.05,
            backoff_max=0.3,
        )
        engine = WatchedEngine(config, ACCOUNTS, None)
        engine.welcomes = []
        for account_id, sample in self.samples.items():
            engine.publish(account_id, crawl_of(sample))
        self.engine = engine
        return engine

    async def crawl_forever(self, rng: random.Random) -> None:
        """What the platform does: new messages and comments, edits; never a deletion, so
        that every item marked read is still there to be checked."""
        assert self.engine is not None
        step = 0
        while True:
            step += 1
            account_id = rng.choice(ACCOUNTS)
            sample = self.samples[account_id]
            sample.grow(NOW + step * 10)
            if sample.batch.contents:
                sample.batch.contents[rng.randrange(len(sample.batch.contents))].stats.likes += 1
            self.engine.publish(account_id, crawl_of(sample))
            await asyncio.sleep(rng.uniform(0.01, 0.06))

    async def handle_forever(self, rng: random.Random, log: TeamLog) -> None:
        """The team at work: notes, assignments, states and templates; keeps what the master
        acknowledged."""
        async with grpc.aio.insecure_channel(self.address) as channel:
            im = ImClient(channel)
            while True:
                account_id = rng.choice(ACCOUNTS)
                conversation_id = rng.choice(self.samples[account_id].batch.conversations).conversation_id
                at = (account_id, conversation_id)
                log.counter += 1
                try:
                    roll = rng.random()
                    if roll < 0.15:
                        name = f"template {log.counter}"
                        await im.create_template(
                            tpl.CreateTemplateRequest(name=name, text="您好 {customer_name}"), timeout=2
                        )
                        log.templates.add(name)
                    elif roll < 0.35:
                        states = log.states.setdefault(at, [])
                        state = rng.choice([e.THREAD_STATE_DONE, e.THREAD_STATE_OPEN])
                        states.append((state, False))
                        await im.set_conversation_state(
                            thr.SetConversationStateRequest(
                                account_id=account_id, conversation_id=conversation_id, thread_state=state
                            ),
                            timeout=2,
                        )
                        states[-1] = (state, True)
                    elif roll < 0.65:
                        text = f"note {log.counter}"
                        await im.add_conversation_note(
                            thr.AddConversationNoteRequest(
                                account_id=account_id, conversation_id=conversation_id, text=text
                            ),
                            timeout=2,
                        )
                        log.notes.setdefault(at, set()).add(text)
                    else:
                        attempts = log.assigned.setdefault(at, [])
                        attempts.append((f"agent{log.counter}", False))
                        await im.assign_conversation(
                            thr.AssignConversationRequest(
                                account_id=account_id, conversation_id=conversation_id, assignee=attempts[-1][0]
                            ),
                            timeout=2,
                        )
                        attempts[-1] = (attempts[-1][0], True)
                    if self.kill_on_handled:
                        self.kill_on_handled = False
                        self.kill_master()
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.05)  # the master is down: try again
                await asyncio.sleep(rng.uniform(0.005, 0.03))

    async def read_forever(self, rng: random.Random, acknowledged: dict[str, set[str]]) -> None:
        """A person marking items read; keeps those the master acknowledged."""
        async with grpc.aio.insecure_channel(self.address) as channel:
            im = ImClient(channel)
            while True:
                account_id = rng.choice(ACCOUNTS)
                try:
                    page = await im.list_unified_messages(
                        uni.ListUnifiedMessagesRequest(account_id=account_id, is_read=False, count=20), timeout=2
                    )
                    if page.messages:
                        item = rng.choice(page.messages).id
                        await im.mark_unified_message_read(
                            uni.MarkUnifiedMessageReadRequest(account_id=account_id, id=item), timeout=2
                        )
                        acknowledged[account_id].add(item)
                        if self.kill_on_mark:
                            self.kill_on_mark = False
                            self.kill_master()
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.05)  # the master is down: try again
                await asyncio.sleep(rng.uniform(0.005, 0.03))


async def served(address: str, account_id: str) -> dict[str, dict[str, bytes]]:
    """The crawled part of what a master serves of an account, over gRPC."""
    async with grpc.aio.insecure_channel(address, options=FRESH) as channel:
        im = ImClient(channel)
        lists: dict[str, tuple[Any, Any, str, str]] = {
            "conversations": (im.list_conversations, conv.ListConversationsRequest, "conversations", "conversation_id"),
            "messages": (im.list_messages, msg.ListMessagesRequest, "messages", "message_id"),
            "contents": (im.list_contents, cnt.ListContentsRequest, "contents", "content_id"),
            "comments": (im.list_discussions, dis.ListDiscussionsRequest, "discussions", "comment_id"),
        }
        out: dict[str, dict[str, bytes]] = {}
        for name, (call, request_type, field, key) in lists.items():
            items = [item async for item in walk(call, request_type(account_id=account_id, count=100), field)]
            out[name] = {getattr(item, key): crawled_bytes(name, item, account_id) for item in items}
        return out


async def read_items(address: str, account_id: str) -> set[str]:
    async with grpc.aio.insecure_channel(address, options=FRESH) as channel:
        request = uni.ListUnifiedMessagesRequest(account_id=account_id, is_read=True, count=100)
        return {item.id async for item in walk(ImClient(channel).list_unified_messages, request, "messages")}


async def settled(rig: Rig) -> None:
    """The worker has resumed: the master serves exactly its truth."""
    assert rig.engine is not None
    await rig.engine.wait_synced(timeout=30)
    for account_id, sample in rig.samples.items():
        assert await served(rig.address, account_id) == view_copy(crawl_of(sample), account_id)
