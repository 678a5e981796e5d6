"""A worker that dies mid-snapshot: it sends half the chunks of a version, says so, and
waits to be killed. Usage: half_snapshot.py MASTER TOKEN WORKER_ID ACCOUNT_ID VERSION."""

from __future__ import annotations

import asyncio
import sys

import grpc

from imsync_client import SyncClient
from services.common.sample import SampleAccount
from services.worker.account_state import AccountView
from services.worker.account_sync import AccountSync


async def main(master: str, token: str, worker_id: str, account_id: str, version: int) -> None:
    sample = SampleAccount(account_id, seed=99, now=1_790_000_000)
    sample.fill(conversations=60, messages_per_conversation=20, contents=5, comments_per_content=10)
    sync = AccountSync(account_id, window=1, chunk_bytes=16 * 1024)
    sync.granted, sync.last_version = True, version - 1
    sync.publish(AccountView.from_batch(sample.account, sample.batch))
    chunks = sync.next_messages()
    assert len(chunks) > 4
    async with grpc.aio.insecure_channel(master) as channel:
        client = SyncClient(channel, worker_id, token=token)
        await client.open({account_id: version - 1})
        for chunk in chunks[: len(chunks) // 2]:
            await client.write(chunk)
        print(f"sent {len(chunks) // 2} of {len(chunks)} chunks", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
