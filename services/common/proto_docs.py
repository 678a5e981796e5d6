"""The protos' comments and field behaviours, read from the descriptor set scripts/generate
writes with source info (generated/imsync/descriptors.binpb): what the OpenAPI document
says of each operation, message and field, and which fields a request must have."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor

# Paths of source-code locations (descriptor.proto's field numbers).
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM = 2, 3, 4
_VALUE, _METHOD = 2, 2


def _names(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """Source path -> full name, for every message, field, enum, value, service and method."""
    out: dict[tuple[int, ...], str] = {}
    package = file.package

    def enum(path: tuple[int, ...], scope: str, proto: descriptor_pb2.EnumDescriptorProto) -> None:
        name = f"{scope}.{proto.name}"
        out[path] = name
        for index, value in enumerate(proto.value):
            out[(*path, _VALUE, index)] = f"{name}.{value.name}"

    def message(path: tuple[int, ...], scope: str, proto: descriptor_pb2.DescriptorProto) -> None:
        name = f"{scope}.{proto.name}"
        out[path] = name
        for index, field in enumerate(proto.field):
            out[(*path, _FIELD, index)] = f"{name}.{field.name}"
        for index, nested in enumerate(proto.nested_type):
            message((*path, _NESTED, index), name, nested)
        for index, nested_enum in enumerate(proto.enum_type):
            enum((*path, _NESTED_ENUM, index), name, nested_enum)

    for index, proto in enumerate(file.message_type):
        message((_MESSAGE, index), package, proto)
    for index, enum_proto in enumerate(file.enum_type):
        enum((_ENUM, index), package, enum_proto)
    for index, service in enumerate(file.service):
        out[(_SERVICE, index)] = f"{package}.{service.name}"
        for position, method in enumerate(service.method):
            out[(_SERVICE, index, _METHOD, position)] = f"{package}.{service.name}.{method.name}"
    return out


@cache
def comments() -> dict[str, str]:
    """Full name -> its leading comment, lines joined, for every documented element."""
    raw = resources.files("imsync").joinpath("descriptors.binpb").read_bytes()
    found: dict[str, str] = {}
    for file in descriptor_pb2.FileDescriptorSet.FromString(raw).file:
        names = _names(file)
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            text = location.leading_comments.strip()
            if name is not None and text:
                found[name] = re.sub(r"\s*\n\s*", " ", text)
    return found


def comment(full_name: str) -> str:
    return comments().get(full_name, "")


def summary(text: str) -> str:
    """A comment's first sentence."""
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first.rstrip(".")


def required(field: FieldDescriptor) -> bool:
    """Whether the field is marked `(google.api.field_behavior) = REQUIRED`."""
    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.REQUIRED in behaviors
