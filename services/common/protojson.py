"""Protobuf messages to and from JSON values, in the two profiles the gateway speaks.

`JsonStyle.GRPC_GATEWAY` is grpc-gateway's default marshaler (protojson with
EmitUnpopulated): lowerCamelCase names, unset message fields as null, 64-bit integers as
strings, enums by full name. `JsonStyle.IM` is what the IM clients read: proto (snake_case)
names, enums by their short lowercase name ("active", "one_on_one"), integers as numbers.
Well-known types are written as protojson writes them in both.
"""

from __future__ import annotations

import base64
import enum
import math
from functools import cache
from typing import Any, NamedTuple, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

_WELL_KNOWN = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.Any",
    "google.protobuf.Empty",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
}
# Well-known types protojson writes as a string, which their own ToJsonString gives.
_AS_STRING = {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


class JsonStyle(enum.Enum):
    GRPC_GATEWAY = "grpc-gateway"
    IM = "im"

    # Hashed by identity, in C (Enum's own hash is a Python call): a style keys the
    # encoding plans and kept encodings every read looks up. Members are singletons and
    # compare by identity, so the two agree.
    __hash__ = object.__hash__


@cache
def _enum_prefix(enum_type: EnumDescriptor) -> str:
    # AccountStatus -> "ACCOUNT_STATUS_", the prefix buf's STANDARD lint requires.
    name = enum_type.name
    snake = "".join(("_" + c if c.isupper() and i else c) for i, c in enumerate(name)).upper()
    return snake + "_"


@cache
def short_enum_names(enum_type: EnumDescriptor) -> dict[int, str]:
    """Enum number -> short lowercase name: ACCOUNT_STATUS_ACTIVE -> "active"."""
    prefix = _enum_prefix(enum_type)
    return {
        value.number: (value.name[len(prefix) :] if value.name.startswith(prefix) else value.name).lower()
        for value in enum_type.values
    }


def descriptor_of(message: Message) -> Descriptor:
    return cast(Descriptor, message.DESCRIPTOR)


def enum_of(field: FieldDescriptor) -> EnumDescriptor:
    if field.enum_type is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return field.enum_type


def field_json_name(field: FieldDescriptor, style: JsonStyle) -> str:
    return field.name if style is JsonStyle.IM else field.json_name


def to_json(message: Message, style: JsonStyle) -> dict[str, Any]:
    """A message as a JSON object, with every field present (grpc-gateway's EmitUnpopulated)."""
    result: dict[str, Any] = _message(message, style)
    return result


# How a field is written, decided once per message type and style (_plan).
# _PLAIN: a string or a bool, written as it is read.
_MAP, _REPEATED, _ONEOF, _MESSAGE, _SCALAR, _PLAIN = range(6)


@cache
def _plan(descriptor: Descriptor, style: JsonStyle) -> tuple[tuple[str, str, int, FieldDescriptor], ...]:
    """(JSON name, attribute, how, the field whose values are written) for each field."""
    plan = []
    for field in descriptor.fields:
        name = field_json_name(field, style)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            plan.append((name, field.name, _MAP, field.message_type.fields_by_name["value"]))
        elif field.is_repeated:
            plan.append((name, field.name, _REPEATED, field))
        elif field.containing_oneof is not None:
            plan.append((name, field.name, _ONEOF, field))
        elif field.message_type is not None:
            plan.append((name, field.name, _MESSAGE, field))
        elif field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BOOL):
            plan.append((name, field.name, _PLAIN, field))
        else:
            plan.append((name, field.name, _SCALAR, field))
    return tuple(plan)


def _message(message: Message, style: JsonStyle) -> Any:
    descriptor = descriptor_of(message)
    full_name = descriptor.full_name
    if full_name in _WELL_KNOWN:
        if full_name in _AS_STRING:
            return message.ToJsonString()  # type: ignore[attr-defined]
        return json_format.MessageToDict(message, preserving_proto_field_name=style is JsonStyle.IM)
    out: dict[str, Any] = {}
    for name, attribute, how, field in _plan(descriptor, style):
        value = getattr(message, attribute)
        if how == _PLAIN:
            out[name] = value
        elif how == _SCALAR:
            out[name] = _scalar_or_message(field, value, style)
        elif how == _MESSAGE:
            out[name] = _message(value, style) if message.HasField(attribute) else None
        elif how == _REPEATED:
            out[name] = [_scalar_or_message(field, item, style) for item in value]
        elif how == _ONEOF:
            if message.HasField(attribute):  # protojson never emits an unset oneof member
                out[name] = _scalar_or_message(field, value, style)
        else:
            out[name] = {str(key): _scalar_or_message(field, item, style) for key, item in value.items()}
    return out


def _scalar_or_message(field: FieldDescriptor, value: Any, style: JsonStyle) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE or kind == FieldDescriptor.TYPE_GROUP:
        return _message(value, style)
    if kind == FieldDescriptor.TYPE_ENUM:
        if style is JsonStyle.IM:
            return short_enum_names(enum_of(field)).get(value, value)
        known = enum_of(field).values_by_number.get(value)
        return known.name if known is not None else value
    if kind in _INT64_TYPES:
        return value if style is JsonStyle.IM else str(value)
    if kind == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def from_json(value: Any, message: Message, style: JsonStyle) -> None:
    """Fills `message` from a JSON value; unknown fields are ignored (DiscardUnknown).

    The IM style also takes enums by their short names. Raises json_format.ParseError.
    """
    if style is JsonStyle.IM:
        value = _expand_short_enums(value, descriptor_of(message))
    json_format.ParseDict(value, message, ignore_unknown_fields=True)


def _expand_short_enums(value: Any, descriptor: Descriptor) -> Any:
    if not isinstance(value, dict) or descriptor.full_name in _WELL_KNOWN:
        return value
    fields = {**descriptor.fields_by_camelcase_name, **descriptor.fields_by_name}
    out = dict(value)
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            continue
        if field.type == FieldDescriptor.TYPE_ENUM:
            enum_type = enum_of(field)
            if isinstance(item, list):
                out[key] = [parse_enum(enum_type, v, style=JsonStyle.IM) for v in item]
            else:
                out[key] = parse_enum(enum_type, item, style=JsonStyle.IM)
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            if isinstance(item, list):
                out[key] = [_expand_short_enums(v, field.message_type) for v in item]
            else:
                out[key] = _expand_short_enums(item, field.message_type)
    return out


def parse_enum(enum_type: EnumDescriptor, text: Any, *, style: JsonStyle) -> Any:
    """An enum's full name for a short name (IM style only); anything else unchanged."""
    if style is JsonStyle.IM and isinstance(text, str) and text not in enum_type.values_by_name:
        for number, short in short_enum_names(enum_type).items():
            if short == text.lower():
                return enum_type.values_by_number[number].name
    return text


class EncodedReply(NamedTuple):
    """A list read answered as JSON already (the embedded gateway's pages: the master's
    api/encoded.py): the response without its items, the repeated field they belong in,
    and the items' JSON, each an object in the gateway's style. `items` is None when the
    store keeps no encodings; the response then holds its items."""

    response: Message
    field: str
    items: list[bytes] | None
