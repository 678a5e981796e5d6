"""An OpenAPI 3.0 document made from the same descriptors and routes the gateway serves.

Each operation is described in the JSON profile its path is served in: grpc-gateway's
(lowerCamelCase, 64-bit integers as strings, google.rpc.Status errors) or the IM one
(snake_case, short enum names, the IM envelope).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.rpc import status_pb2

from .marshalers import Profile, ProfileRegistry
from .protojson import JsonStyle, field_json_name, short_enum_names
from .routes import Route

Schema = dict[str, Any]


def _descriptor(message_type: Any) -> Descriptor:
    return cast(Descriptor, message_type.DESCRIPTOR)

_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_UINT32 = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_UINT64 = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "1.5s"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "string", "format": "uint64"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "int64", "minimum": 0},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
}


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Schema] = {}

    def ref(self, descriptor: Descriptor, style: JsonStyle) -> Schema:
        if descriptor.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[descriptor.full_name])
        name = f"im.{descriptor.full_name}" if style is JsonStyle.IM else descriptor.full_name
        if name not in self.components:
            self.components[name] = {}  # placed first: recursive messages refer to it
            self.components[name] = {
                "type": "object",
                "properties": {field_json_name(f, style): self.field(f, style) for f in descriptor.fields},
            }
        return {"$ref": f"#/components/schemas/{name}"}

    def field(self, field: FieldDescriptor, style: JsonStyle) -> Schema:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return {"type": "object", "additionalProperties": self.single(field.message_type.fields_by_name["value"], style)}
        item = self.single(field, style)
        if field.is_repeated:
            return {"type": "array", "items": item}
        if field.message_type is not None:
            return {"allOf": [item], "nullable": True} if "$ref" in item else item | {"nullable": True}
        return item

    def single(self, field: FieldDescriptor, style: JsonStyle) -> Schema:
        kind = field.type
        if field.message_type is not None:
            return self.ref(field.message_type, style)
        if field.enum_type is not None:
            if style is JsonStyle.IM:
                return {"type": "string", "enum": sorted(set(short_enum_names(field.enum_type).values()))}
            return {"type": "string", "enum": [value.name for value in field.enum_type.values]}
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == FieldDescriptor.TYPE_STRING:
            return {"type": "string"}
        if kind == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return {"type": "number"}
        if kind in _INT32:
            return {"type": "integer", "format": "int32"}
        if kind in _UINT32:
            return {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}
        if kind in _INT64 or kind in _UINT64:
            if style is JsonStyle.IM:
                return {"type": "integer", "format": "int64"} | ({"minimum": 0} if kind in _UINT64 else {})
            return {"type": "string", "format": "int64" if kind in _INT64 else "uint64"}
        return {}


def _query_parameters(
    descriptor: Descriptor, bound: set[str], style: JsonStyle, schemas: _Schemas, prefix: str = "", depth: int = 0
) -> list[Schema]:
    out: list[Schema] = []
    for field in descriptor.fields:
        path = prefix + field.name
        if path in bound or any(path.startswith(b + ".") for b in bound):
            continue
        name = prefix + field_json_name(field, style)
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            continue
        if message is not None and message.full_name not in _WELL_KNOWN:
            if not field.is_repeated and depth < 2:
                out += _query_parameters(message, bound, style, schemas, path + ".", depth + 1)
            continue
        if message is not None and field.is_repeated:
            continue
        schema = schemas.single(field, style)
        if field.is_repeated:
            schema = {"type": "array", "items": schema}
        out.append({"name": name, "in": "query", "required": False, "schema": schema, "explode": True})
    return out


def _path_parameter(route: Route, variable: str, style: JsonStyle, schemas: _Schemas) -> Schema:
    descriptor = _descriptor(route.request_type)
    field: FieldDescriptor | None = None
    for part in variable.split("."):
        field = descriptor.fields_by_name[part]
        if field.message_type is not None:
            descriptor = field.message_type
    assert field is not None
    schema = schemas.single(field, style)
    if schema.get("type") == "string" and "enum" not in schema:
        schema = schema | {"minLength": 1}
    return {"name": variable, "in": "path", "required": True, "schema": schema}


def _openapi_path(route: Route) -> str:
    # {name=shelves/*} is one parameter in OpenAPI: {name}.
    return re.sub(r"\{([^}=]+)(=[^}]*)?\}", r"{\1}", route.template.template)


def _responses(route: Route, profile: Profile, schemas: _Schemas) -> Schema:
    style = profile.style
    descriptor = _descriptor(route.response_type)
    body = schemas.ref(descriptor, style)
    if route.response_body:
        body = schemas.field(descriptor.fields_by_name[route.response_body], style)
    status = schemas.ref(_descriptor(status_pb2.Status), JsonStyle.GRPC_GATEWAY)
    if profile.envelope:
        ok: Schema = {
            "type": "object",
            "properties": {"data": body, "status_code": {"type": "integer"}, "status_msg": {"type": "string"}},
            "required": ["data", "status_code"],
        }
        error: Schema = {
            "type": "object",
            "properties": {"data": {"nullable": True}, "status_code": {"type": "integer"}, "status_msg": {"type": "string"}},
            "required": ["data", "status_code", "status_msg"],
        }
    else:
        ok, error = body, status
    if route.server_streaming:
        line = {"type": "object", "properties": {"result": body, "error": status}}
        return {
            "200": {
                "description": "A stream: one JSON object per line ({\"result\": ...} or a final {\"error\": ...}); "
                "server-sent events with Accept: text/event-stream",
                "content": {"application/json": {"schema": line}, "text/event-stream": {"schema": {"type": "string"}}},
            },
            "default": {"description": "An error", "content": {"application/json": {"schema": error}}},
        }
    return {
        "200": {"description": "OK", "content": {"application/json": {"schema": ok}}},
        "default": {"description": "An error (google.rpc.Status codes, grpc-gateway's HTTP statuses)",
                    "content": {"application/json": {"schema": error}}},
    }


def openapi_document(routes: Sequence[Route], profiles: ProfileRegistry, *, title: str = "imsync") -> Schema:
    schemas = _Schemas()
    paths: dict[str, dict[str, Schema]] = {}
    for index, route in enumerate(routes):
        profile = profiles.for_path(route.template.template)
        style = profile.style
        bound = set(route.template.variables)
        operation: Schema = {
            "operationId": f"{route.method.containing_service.name}_{route.method.name}_{index}",
            "tags": [route.method.containing_service.name],
            "summary": f"{route.method.full_name}",
            "parameters": [_path_parameter(route, v, style, schemas) for v in route.template.variables],
            "responses": _responses(route, profile, schemas),
        }
        if route.body:
            descriptor = _descriptor(route.request_type)
            body_schema = (
                schemas.ref(descriptor, style)
                if route.body == "*"
                else schemas.field(descriptor.fields_by_name[route.body], style)
            )
            operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": body_schema}}}
            bound.add(route.body)
        if route.body != "*":
            operation["parameters"] += _query_parameters(_descriptor(route.request_type), bound, style, schemas)
        paths.setdefault(_openapi_path(route), {})[route.http_method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": "v1"},
        "paths": paths,
        "components": {"schemas": schemas.components},
    }
