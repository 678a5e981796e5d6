"""The attacks that tied up a master's memory, against a master process with its default
bounds: each leaves it under a stated resident size, and it keeps serving.

- 1,000 reads differing only in a parameter nobody reads (the response cache of its
  embedded gateway: a byte budget, a quarter per key);
- 250 chunks of 4 MB of a snapshot never marked last (bytes held per stream);
- hellos naming 20,000 accounts the master does not know (at most 1,000 a hello, 10,000
  accounts in all).

docs/security.md states the sizes this test holds the master to."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import httpx
import pytest

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from imsync_client import SyncClient
from services import processes
from services.common.sample import SampleAccount
from services.master.auth.api_keys import create_api_key

from .conftest import NOW, token_for, write_tokens

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
# What each attack may add to the master's resident memory, one after the other (measured:
# docs/security.md).
CACHE_FLOOD = 48 * MiB
SNAPSHOT_FLOOD = 400 * MiB
HELLO_FLOOD = 160 * MiB


def resident(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.timeout(300)
async def test_each_attack_leaves_the_master_under_its_bound_and_serving(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys.toml"
    key = create_api_key(keys, "reader", ["*"], ["read"])
    master = await processes.start(
        [
            "master",
            "--listen",
            "127.0.0.1:0",
            "--worker-tokens",
            str(write_tokens(tmp_path / "tokens.toml")),
            "--api-keys",
            str(keys),
            "--rate-limit",
            "0",
            "--retention",
            "none",
            "--gateway-listen",
            "127.0.0.1:0",
            "--gateway-console",
            "none",
        ]
    )
    grpc_address = (await master.line_with("master listening on")).rpartition(" ")[2]
    pid = master.process.pid
    sample = SampleAccount("shop", seed=3, now=NOW)
    sample.fill(conversations=200, messages_per_conversation=5, contents=5, comments_per_content=5)
    options = [("grpc.max_send_message_length", 256 * MiB)]
    try:
        async with (
            grpc.aio.insecure_channel(grpc_address, options=options) as channel,
            httpx.AsyncClient(
                base_url=f"http://{master.address}", headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as http,
        ):
            worker = SyncClient(channel, "test-worker", token=token_for("test-worker"))
            await worker.open({"shop": 0})
            assert await worker.push_snapshot("shop", 1, sample.account, sample.batch) == 1
            await asyncio.sleep(1)
            base = resident(pid)

            async def serving() -> None:
                page = await http.get("/api/im/conversations", params={"account_id": "shop", "count": "20"})
                assert page.status_code == 200 and len(page.json()["data"]["conversations"]) == 20

            # 1. The cache flood.
            before = base
            for index in range(1000):
                answer = await http.get(
                    "/api/im/conversations", params={"account_id": "shop", "count": "100", "unused": str(index)}
                )
                assert answer.status_code in (200, 400)
            grown = resident(pid) - before
            print(f"cache flood: +{grown / MiB:.0f} MiB")
            assert grown < CACHE_FLOOD, grown / MiB
            await serving()

            # 2. Chunks of a snapshot never marked last.
            before = resident(pid)
            chunk = sync_pb2.EntityBatch(
                messages=[e.Message(message_id=f"m{i}", conversation_id="c", content="x" * 1000) for i in range(3900)]
            )
            flooder = SyncClient(channel, "worker-2", token=token_for("worker-2"))
            await flooder.open({"flooded": 0})
            for index in range(250):
                await flooder.write(
                    sync_pb2.SyncDataRequest(
                        snapshot=sync_pb2.Snapshot(account_id="flooded", version=1, chunk_index=index, entities=chunk)
                    )
                )
            refused = (await flooder.receive()).nack
            assert "bytes" in refused.status.message
            grown = resident(pid) - before
            print(f"snapshot flood: +{grown / MiB:.0f} MiB")
            assert grown < SNAPSHOT_FLOOD, grown / MiB
            await serving()
            assert await worker.push_snapshot("shop", 2, sample.account, sample.batch) == 2, "syncs go on"

            # 3. Hellos naming accounts nobody knows.
            before = resident(pid)
            floods = [SyncClient(channel, "intruder", token=token_for("intruder")) for _ in range(20)]
            granted = 0
            for index, flood in enumerate(floods):
                granted += len(await flood.open({f"ghost-{index}-{n}": 0 for n in range(1000)}))
            assert granted < 10_000, "at most 10,000 accounts in all"
            grown = resident(pid) - before
            print(
                f"hello flood: +{grown / MiB:.0f} MiB ({granted} accounts made); {resident(pid) / MiB:.0f} MiB in all"
            )
            assert grown < HELLO_FLOOD, grown / MiB
            await serving()
            for flood in floods:
                await flood.close()
            await flooder.close()
            await worker.close()
    finally:
        await master.stop()
