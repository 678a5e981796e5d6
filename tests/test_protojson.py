"""The two JSON profiles against protojson's documented behaviour."""

from __future__ import annotations

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.common.protojson import JsonStyle, from_json, to_json


def sample() -> e.Conversation:
    conversation = e.Conversation(
        account_id="a", conversation_id="0:1:1:2", conversation_type=e.CONVERSATION_TYPE_ONE_ON_ONE, unread_count=3
    )
    conversation.create_time.FromSeconds(1_790_000_000)
    return conversation


def test_grpc_gateway_style_emits_every_field_in_lower_camel_case() -> None:
    out = to_json(sample(), JsonStyle.GRPC_GATEWAY)
    assert out["conversationId"] == "0:1:1:2"
    assert out["conversationType"] == "CONVERSATION_TYPE_ONE_ON_ONE"
    assert out["unreadCount"] == "3"
    assert out["createTime"] == "2026-09-21T14:13:20Z"
    assert out["participant"] is None and out["lastMessage"] is None
    assert out["isPinned"] is False and out["status"] == "CONVERSATION_STATUS_UNSPECIFIED"


def test_im_style_uses_proto_names_short_enums_and_numbers() -> None:
    out = to_json(sample(), JsonStyle.IM)
    assert out["conversation_type"] == "one_on_one"
    assert out["unread_count"] == 3
    assert out["status"] == "unspecified"
    assert out["create_time"] == "2026-09-21T14:13:20Z"


def test_oneof_members_are_emitted_only_when_set() -> None:
    request = sync_pb2.SyncDataRequest(hello=sync_pb2.Hello(worker_id="w"))
    assert set(to_json(request, JsonStyle.GRPC_GATEWAY)) == {"hello"}


def test_reading_json_back_in_both_styles() -> None:
    for style in JsonStyle:
        parsed = e.Conversation()
        from_json(to_json(sample(), style) | {"unknownField": 1}, parsed, style)
        assert parsed == sample()
