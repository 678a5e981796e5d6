"""A program another service would write with the client, checked by mypy --strict as its
authors would check it: it passes as written, and a mistyped filter fails type checking."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

PROGRAM = """
from __future__ import annotations

import asyncio

from imsync_client import ImsyncError, Inbox, Reply, UnifiedMessageType, connect


async def main() -> None:
    async with connect("127.0.0.1:50051", api_key="KEY") as client:
        inbox = Inbox(client)
        async for conversation in inbox.conversations("douyin-001", {filters}):
            print(conversation.conversation_id, conversation.unread_count)
        async for item in inbox.unified("douyin-001", types=[UnifiedMessageType.UNIFIED_MESSAGE_TYPE_COMMENT]):
            await inbox.mark_read(item.id, account_id="douyin-001")
        try:
            reply: Reply = await inbox.send_message("conversation-1", "您好", account_id="douyin-001")
        except ImsyncError as error:
            print(error.code(), error.field_violations, error.reason)
            return
        print((await inbox.wait_for_reply(reply.request_id)).state)


asyncio.run(main())
"""


def check(tmp_path: Path, filters: str) -> tuple[str, int]:
    program = tmp_path / "service.py"
    program.write_text(PROGRAM.replace("{filters}", filters))
    out, err, status = api.run(["--strict", "--no-incremental", "--cache-dir", str(tmp_path / ".mypy"), str(program)])
    return out + err, status


@pytest.mark.timeout(300)
def test_a_program_using_the_client_passes_mypy_strict_and_a_mistyped_filter_fails(tmp_path: Path) -> None:
    report, status = check(tmp_path, "is_pinned=True, is_muted=False")
    assert status == 0, report
    report, status = check(tmp_path, "is_pined=True")
    assert status == 1 and 'Unexpected keyword argument "is_pined"' in report, report
    report, status = check(tmp_path, 'is_pinned="yes"')
    assert status == 1 and "is_pinned" in report and '"str"' in report, report
