"""Agents: an API key may name the person it belongs to, and the replies sent with it
record them (over gRPC and the in-process channel alike, through a restart of a
journaled master), while a key without one records nobody."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grpc
import pytest

from imsync.v1 import replies_pb2 as rep
from imsync.v1 import sync_pb2
from imsync_client import ImClient, SyncClient
from services.common.sample import SampleAccount
from services.master.auth.api_keys import check_agent, create_api_key
from services.master.in_process import InProcessChannel
from services.master.model.retention import KEEP_EVERYTHING
from services.master.server import Master, MasterConfig
from services.master.sync.hub import SyncConfig

from .conftest import NOW, token_for, write_tokens


def test_a_key_names_its_agent_in_the_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    create_api_key(keys, "fang", ["*"], ["read", "reply"], agent='王芳 "Fang"')
    create_api_key(keys, "bot", ["*"], ["read"])
    entries = tomllib.loads(keys.read_text())["keys"]
    assert entries["fang"]["agent"] == '王芳 "Fang"'
    assert "agent" not in entries["bot"]


@pytest.mark.parametrize("name", ["", " 王芳", "王芳\n", "x" * 65, "a\tb"])
def test_a_bad_agent_name_is_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="agent"):
        check_agent(name)
    if not name:
        return  # `--agent ""` is the default: a key of a program, naming nobody
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "api-key",
            "create",
            "k",
            "--agent",
            name,
            "--file",
            str(tmp_path / "k.toml"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "agent" in run.stderr and not (tmp_path / "k.toml").exists()


async def test_replies_record_the_agent_of_the_key_that_sent_them(tmp_path: Path) -> None:
    keys_file = tmp_path / "api-keys.toml"
    fang = create_api_key(keys_file, "fang", ["shop"], ["read", "reply"], agent="王芳")
    bot = create_api_key(keys_file, "bot", ["shop"], ["read", "reply"])
    config = MasterConfig(
        listen="127.0.0.1:0",
        worker_tokens=write_tokens(tmp_path / "tokens.toml"),
        api_keys=keys_file,
        sync=SyncConfig(heartbeat_interval=0.5, lease_duration=2.0),
        retention=KEEP_EVERYTHING,
        rate_limit=0,
        data_dir=tmp_path / "data",
    )
    account = SampleAccount("shop", seed=4, now=NOW)
    account.fill(conversations=2, messages_per_conversation=2, contents=1, comments_per_content=1)
    conversation = account.batch.conversations[0].conversation_id

    def as_key(key: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key}"),)

    def sending(request_id: str) -> rep.SendReplyRequest:
        return rep.SendReplyRequest(
            account_id="shop",
            request_id=request_id,
            send_message=sync_pb2.SendMessage(conversation_id=conversation, text="您好，有货的"),
        )

    master = Master(config)
    port = await master.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            sync = SyncClient(channel, "test-worker", token=token_for("test-worker"))
            await sync.open({"shop": 0})
            await sync.push_snapshot("shop", 1, account.account, account.batch)
            await sync.close()
            over_grpc = ImClient(channel)
            in_process = ImClient(InProcessChannel(master.im_servicers, master.keys))  # type: ignore[arg-type]
            assert (await over_grpc.send_reply(sending("r-1"), metadata=as_key(fang))).reply.agent == "王芳"
            assert (await in_process.send_reply(sending("r-2"), metadata=as_key(fang))).reply.agent == "王芳"
            assert (await over_grpc.send_reply(sending("r-3"), metadata=as_key(bot))).reply.agent == ""
            # Sent again by another key, the reply stays the first sender's (and is the same reply).
            again = await over_grpc.send_reply(sending("r-1"), metadata=as_key(bot))
            assert again.reply.agent == "王芳"
    finally:
        await master.stop()

    restarted = Master(config)
    port = await restarted.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            im = ImClient(channel)
            found = await im.get_reply(rep.GetReplyRequest(account_id="shop", request_id="r-2"), metadata=as_key(bot))
            assert found.reply.agent == "王芳", "recorded with the reply, through the journal"
    finally:
        await restarted.stop()
