"""An OpenAPI 3.0 document made from the same descriptors and routes the gateway serves,
made to generate clients from.

Each operation is described in the JSON profile its path is served in: grpc-gateway's
(lowerCamelCase, 64-bit integers as strings, google.rpc.Status errors) or the IM one
(snake_case, short enum names, the IM envelope). Operation ids are `Service_Method`, with
`_N` for the method's Nth additional binding: adding a route renames no other. Summaries
and descriptions are the protos' comments; fields marked `(google.api.field_behavior) =
REQUIRED` are required parameters and properties; every status the gateway answers with
is documented with its body.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.rpc import status_pb2

from services.common import proto_docs
from services.common.protojson import JsonStyle, field_json_name, short_enum_names

from . import legacy
from .marshalers import Profile, ProfileRegistry
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
            schema: Schema = {
                "type": "object",
                "properties": {field_json_name(f, style): self.field(f, style) for f in descriptor.fields},
            }
            required = [field_json_name(f, style) for f in descriptor.fields if proto_docs.required(f)]
            if required:
                schema["required"] = required
            text = proto_docs.comment(descriptor.full_name)
            if text:
                schema["description"] = text
            self.components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def field(self, field: FieldDescriptor, style: JsonStyle) -> Schema:
        schema = self._field(field, style)
        text = proto_docs.comment(field.full_name)
        if not text:
            return schema
        if "$ref" in schema:  # a $ref's siblings are ignored in OpenAPI 3.0
            return {"allOf": [schema], "description": text}
        return schema | {"description": text}

    def _field(self, field: FieldDescriptor, style: JsonStyle) -> Schema:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return {
                "type": "object",
                "additionalProperties": self.single(field.message_type.fields_by_name["value"], style),
            }
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
        parameter: Schema = {
            "name": name,
            "in": "query",
            "required": depth == 0 and proto_docs.required(field),
            "schema": schema,
            "explode": True,
        }
        text = proto_docs.comment(field.full_name)
        if message is not None and message.full_name == "google.protobuf.Timestamp" and style is JsonStyle.IM:
            text = f"{text} An RFC 3339 time, or epoch milliseconds.".strip()
        if text:
            parameter["description"] = text
        out.append(parameter)
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
    parameter: Schema = {"name": variable, "in": "path", "required": True, "schema": schema}
    text = proto_docs.comment(field.full_name)
    if text:
        parameter["description"] = text
    return parameter


def _openapi_path(route: Route) -> str:
    # {name=shelves/*} is one parameter in OpenAPI: {name}.
    return re.sub(r"\{([^}=]+)(=[^}]*)?\}", r"{\1}", route.template.template)


# The statuses every call may answer with, besides 200 (errors.py has the whole table).
_ERRORS = {
    "400": "The request is invalid: the error's details name the field (google.rpc.BadRequest)",
    "401": "No API key, or one the master does not know",
    "403": "The API key may not use this account, or lacks the scope",
    "404": "Not found (or in an account the key may not use)",
    "409": "In conflict with what the master holds (a request id reused with other content)",
    "429": "Too many requests for this key: try again after Retry-After seconds",
}


def _error_schema(profile: Profile, schemas: _Schemas) -> Schema:
    status = schemas.ref(_descriptor(status_pb2.Status), JsonStyle.GRPC_GATEWAY)
    if not profile.envelope:
        return status
    if "im.Error" not in schemas.components:
        schemas.components["im.Error"] = {
            "type": "object",
            "description": "An error in the IM envelope: data is null, status_code the gRPC code, status_msg why, "
            "details the google.rpc details (BadRequest field violations, ErrorInfo, RetryInfo).",
            "properties": {
                "data": {"type": "object", "nullable": True},
                "status_code": {"type": "integer"},
                "status_msg": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            },
            "required": ["data", "status_code", "status_msg"],
        }
    return {"$ref": "#/components/schemas/im.Error"}


def _responses(route: Route, profile: Profile, schemas: _Schemas) -> Schema:
    style = profile.style
    descriptor = _descriptor(route.response_type)
    body = schemas.ref(descriptor, style)
    if route.response_body:
        body = schemas.field(descriptor.fields_by_name[route.response_body], style)
    error = _error_schema(profile, schemas)
    errors: Schema = {
        code: {"description": why, "content": {"application/json": {"schema": error}}} for code, why in _ERRORS.items()
    }
    errors["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}
    errors["default"] = {
        "description": "Another error (google.rpc.Status codes as grpc-gateway maps them to HTTP)",
        "content": {"application/json": {"schema": error}},
    }
    if descriptor.full_name == "google.api.HttpBody":
        return {
            "200": {
                "description": "Raw bytes, of the content type the call answers with",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            },
            **errors,
        }
    if profile.envelope:
        ok: Schema = {
            "type": "object",
            "properties": {"data": body, "status_code": {"type": "integer"}, "status_msg": {"type": "string"}},
            "required": ["data", "status_code"],
        }
    else:
        ok = body
    if route.server_streaming:
        status = schemas.ref(_descriptor(status_pb2.Status), JsonStyle.GRPC_GATEWAY)
        line = {"type": "object", "properties": {"result": body, "error": status}}
        return {
            "200": {
                "description": 'A stream: one JSON object per line ({"result": ...} or a final {"error": ...}); '
                "server-sent events with Accept: text/event-stream (a comment every 15 s keeps it open)",
                "content": {"application/json": {"schema": line}, "text/event-stream": {"schema": {"type": "string"}}},
            },
            **errors,
        }
    responses: Schema = {"200": {"description": "OK", "content": {"application/json": {"schema": ok}}}}
    if route.http_method == "GET":
        responses["200"]["headers"] = {"ETag": {"schema": {"type": "string"}, "description": "The answer's tag"}}
        responses["304"] = {"description": "Not Modified: the answer is the one whose ETag If-None-Match gave"}
    return {**responses, **errors}


def _operation_id(route: Route) -> str:
    base = f"{route.method.containing_service.name}_{route.method.name}"
    return f"{base}_{route.binding}" if route.binding else base


def openapi_document(routes: Sequence[Route], profiles: ProfileRegistry, *, title: str = "imsync") -> Schema:
    schemas = _Schemas()
    paths: dict[str, dict[str, Schema]] = {}
    for route in routes:
        profile = profiles.for_path(route.template.template)
        style = profile.style
        bound = set(route.template.variables)
        text = proto_docs.comment(route.method.full_name)
        operation: Schema = {
            "operationId": _operation_id(route),
            "tags": [route.method.containing_service.name],
            "summary": proto_docs.summary(text) or route.method.full_name,
            "description": f"{text}\n\ngRPC: `{route.method.full_name}`".strip(),
            "parameters": [_path_parameter(route, v, style, schemas) for v in route.template.variables],
            "responses": _responses(route, profile, schemas),
        }
        if route.body:
            descriptor = _descriptor(route.request_type)
            body_field = None if route.body == "*" else descriptor.fields_by_name[route.body]
            body_schema = schemas.ref(descriptor, style) if body_field is None else schemas.field(body_field, style)
            body_type = descriptor if body_field is None else body_field.message_type
            if body_type is not None and body_type.full_name == "google.api.HttpBody":
                content: Schema = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
            else:
                content = {"application/json": {"schema": body_schema}}
            needed = any(proto_docs.required(f) for f in descriptor.fields if f.name not in bound)
            operation["requestBody"] = {"required": needed, "content": content}
            bound.add(route.body)
        if route.body != "*":
            operation["parameters"] += _query_parameters(_descriptor(route.request_type), bound, style, schemas)
        if profile.envelope:
            operation["parameters"].append(
                {
                    "name": legacy.PARAM,
                    "in": "query",
                    "required": False,
                    "schema": {"type": "boolean"},
                    "description": "Also answer with the old IM names (msg_id, discussion_id, author_id, author_name).",
                }
            )
        paths.setdefault(_openapi_path(route), {})[route.http_method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": "v1",
            "description": "imsync's REST API, served by its gateway from the IM services' google.api.http "
            "annotations. /api/im/... answers in the IM envelope; other routes as grpc-gateway does.",
        },
        "security": [{"bearerAuth": []}, {}],
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key made by `imsync api-key create` (none when the master has no keys)",
                },
            },
        },
    }
