"""JSON profiles, chosen per request (as grpc-gateway's marshaler registry does).

A profile turns a response message or a google.rpc.Status into a body, and says how
query parameters are read. The IM profile is grpc-gateway configured with UseProtoNames,
a response rewriter (the IM envelope), an error handler (the IM error envelope, its
details included) and strict binding (an unknown parameter or body field is 400 naming
it); its legacy variant adds the old IM names to answers (legacy.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from services.common.protojson import EncodedReply, JsonStyle, descriptor_of, field_json_name, to_json

from . import legacy as legacy_names

_PAGE_KEYS: dict[tuple[str, str, JsonStyle], tuple[bytes, bytes] | None] = {}


def _page_keys(message: Descriptor, field: str, style: JsonStyle) -> tuple[bytes, bytes] | None:
    """For a page's response (fields: the repeated `field`, `cursor`, `has_more`, in this
    order), the JSON name of its items and what comes before has_more's value; else None."""
    key = (message.full_name, field, style)
    if key not in _PAGE_KEYS:
        fields = message.fields
        shape = [(f.name, f.is_repeated, f.type) for f in fields]
        page = shape == [
            (field, True, FieldDescriptor.TYPE_MESSAGE),
            ("cursor", False, FieldDescriptor.TYPE_STRING),
            ("has_more", False, FieldDescriptor.TYPE_BOOL),
        ]
        _PAGE_KEYS[key] = (
            (field_json_name(fields[0], style).encode(), b',"' + field_json_name(fields[2], style).encode() + b'":')
            if page
            else None
        )
    return _PAGE_KEYS[key]


# Imported so that BadRequest details can be printed from their Any.
_DETAIL_TYPES = (error_details_pb2.BadRequest,)


def _dumps(value: Any) -> bytes:
    # Compact UTF-8, as json.dumps(ensure_ascii=False, separators=(",", ":")) writes it.
    return orjson.dumps(value)


@dataclass(frozen=True)
class Profile:
    name: str
    style: JsonStyle
    # IM clients send repeated values as one comma-separated parameter (types=comment,discussion).
    split_commas: bool
    envelope: bool
    # Unknown query parameters and body fields are 400 (else ignored, as grpc-gateway does).
    strict: bool = False
    # The old IM names beside today's in answers (legacy.py).
    legacy: bool = False

    def json(self, message: Message) -> dict[str, object]:
        data = to_json(message, self.style)
        if self.legacy:
            legacy_names.add_names(data, descriptor_of(message))
        return data

    def response_body(self, message: Message) -> bytes:
        data = self.json(message)
        if self.envelope:
            return _dumps({"data": data, "status_code": 0, "status_msg": ""})
        return _dumps(data)

    def encoded_body(self, reply: EncodedReply) -> bytes:
        """A list read answered as JSON already: its items joined into the response's."""
        if reply.items is not None and not self.legacy:
            page = _page_keys(descriptor_of(reply.response), reply.field, self.style)
            if page is not None:
                # A page's response (its items, cursor, has_more), written as below would
                # write it, without a dictionary of its fields first.
                response: Any = reply.response
                head, tail = (b'{"data":{"', b'},"status_code":0,"status_msg":""}') if self.envelope else (b'{"', b"}")
                return b"".join(
                    (
                        head,
                        page[0],
                        b'":[',
                        b",".join(reply.items),
                        b'],"cursor":',
                        _dumps(response.cursor),
                        page[1],
                        b"true" if response.has_more else b"false",
                        tail,
                    )
                )
        data = self.json(reply.response)
        if reply.items is not None:
            response = descriptor_of(reply.response)
            name = field_json_name(response.fields_by_name[reply.field], self.style)
            data[name] = orjson.Fragment(b"[" + b",".join(reply.items) + b"]")
        if self.envelope:
            return _dumps({"data": data, "status_code": 0, "status_msg": ""})
        return _dumps(data)

    def stream_item(self, message: Message) -> bytes:
        """One message of a server stream, as grpc-gateway writes it: {"result": ...} and a newline."""
        return _dumps({"result": self.json(message)}) + b"\n"

    def stream_error(self, status: status_pb2.Status) -> bytes:
        return _dumps({"error": self._status_json(status)}) + b"\n"

    def event(self, message: Message, event_id: str) -> bytes:
        """One server-sent event."""
        head = f"id: {event_id}\n" if event_id else ""
        return f"{head}data: ".encode() + _dumps(self.json(message)) + b"\n\n"

    def event_error(self, status: status_pb2.Status) -> bytes:
        return b"event: error\ndata: " + _dumps(self._status_json(status)) + b"\n\n"

    def _status_json(self, status: status_pb2.Status) -> dict[str, object]:
        # EmitUnpopulated, as grpc-gateway's default marshaler: "details": [] included.
        return json_format.MessageToDict(
            status,
            preserving_proto_field_name=self.style is JsonStyle.IM,
            always_print_fields_with_no_presence=True,
        )

    def error_body(self, status: status_pb2.Status) -> bytes:
        if self.envelope:
            details = self._status_json(status)["details"]
            return _dumps({"data": None, "status_code": status.code, "status_msg": status.message, "details": details})
        return _dumps(self._status_json(status))


GRPC_GATEWAY = Profile("grpc-gateway", JsonStyle.GRPC_GATEWAY, split_commas=False, envelope=False)
IM = Profile("im", JsonStyle.IM, split_commas=True, envelope=True, strict=True)
IM_LEGACY = Profile("im-legacy", JsonStyle.IM, split_commas=True, envelope=True, strict=True, legacy=True)


@dataclass(frozen=True)
class ProfileRegistry:
    """Picks a profile by path prefix; the first matching prefix wins."""

    by_prefix: tuple[tuple[str, Profile], ...] = (("/api/im/", IM),)
    default: Profile = GRPC_GATEWAY

    def for_path(self, path: str) -> Profile:
        for prefix, profile in self.by_prefix:
            if path.startswith(prefix):
                return profile
        return self.default

    def for_request(self, path: str, query: list[tuple[str, str]]) -> Profile:
        """The path's profile, in its legacy variant when the request asks for the old names."""
        profile = self.for_path(path)
        if profile is IM and legacy_names.asked(query):
            return IM_LEGACY
        return profile


# The IM profile with the old names in every answer (imsync gateway --im-legacy-names).
LEGACY_NAMES = ProfileRegistry(by_prefix=(("/api/im/", IM_LEGACY),))
