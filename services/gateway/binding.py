"""Builds an RPC's request message from an HTTP request, as grpc-gateway does.

Path variables first, then the body (`body: "*"` or one field), then query parameters for
every field neither of them bound: nested (`a.b=`), repeated (`?x=1&x=2`), enums by name or
number, well-known types in their JSON form. Unknown parameters and body fields are ignored,
as grpc-gateway ignores them, unless the profile is strict (the IM one): then they are 400
naming them. A body bound to a google.api.HttpBody is taken raw, with its Content-Type; a
PATCH whose request has an `update_mask` the client left empty gets one naming the fields
its body holds, as grpc-gateway fills it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from services.common.protojson import JsonStyle, descriptor_of, enum_of, from_json, parse_enum

K = TypeVar("K")
V = TypeVar("V")


class BindingError(Exception):
    """The HTTP request cannot become the RPC's request; `field` names the culprit."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1, "int32"),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1, "int32"),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1, "int32"),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1, "uint32"),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1, "uint32"),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1, "int64"),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1, "int64"),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1, "int64"),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1, "uint64"),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1, "uint64"),
}


def _find_field(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    return descriptor.fields_by_name.get(name) or descriptor.fields_by_camelcase_name.get(name)


def _resolve(message: Message, path: str) -> tuple[Message, FieldDescriptor] | None:
    """The message holding the last field of a dotted path, and that field; None if unknown."""
    parts = path.split(".")
    target = message
    for index, part in enumerate(parts):
        field = _find_field(descriptor_of(target), part)
        if field is None:
            return None
        if index == len(parts) - 1:
            return target, field
        if (
            field.message_type is None
            or field.is_repeated
            or field.message_type.full_name.startswith("google.protobuf.")
        ):
            return None
        target = getattr(target, field.name)
    return None


def _scalar(field: FieldDescriptor, text: str, name: str, style: JsonStyle) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return text
    if kind == FieldDescriptor.TYPE_BOOL:
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise BindingError(name, f"invalid value {text!r} for bool")
    if kind in _INT_RANGES:
        low, high, label = _INT_RANGES[kind]
        try:
            number = int(text, 10)
        except ValueError:
            raise BindingError(name, f"invalid value {text!r} for {label}") from None
        if not low <= number <= high:
            raise BindingError(name, f"value {text!r} out of range for {label}")
        return number
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        try:
            return float(text)
        except ValueError:
            raise BindingError(name, f"invalid value {text!r} for a number") from None
    if kind == FieldDescriptor.TYPE_BYTES:
        try:
            padded = text + "=" * (-len(text) % 4)
            return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        except (binascii.Error, ValueError):
            raise BindingError(name, f"invalid base64 value {text!r}") from None
    if kind == FieldDescriptor.TYPE_ENUM:
        enum_type = enum_of(field)
        full = parse_enum(enum_type, text, style=style)
        value = enum_type.values_by_name.get(full)
        if value is None and text.lstrip("-").isdigit():
            value = enum_type.values_by_number.get(int(text))
        if value is None:
            choices = ", ".join(v.name for v in enum_type.values)
            raise BindingError(name, f"invalid value {text!r} for enum {enum_type.name} (one of {choices})")
        return value.number
    raise BindingError(name, "this field cannot be set from a query parameter")


def set_from_text(message: Message, path: str, texts: Sequence[str], style: JsonStyle) -> bool:
    """Sets the field at `path` from its textual values; False when no such field exists."""
    resolved = _resolve(message, path)
    if resolved is None:
        return False
    target, field = resolved
    if field.message_type is not None:
        if field.is_repeated:
            raise BindingError(path, "a repeated message cannot be set from a query parameter")
        if len(texts) != 1:
            raise BindingError(path, "expected one value")
        if not field.message_type.full_name.startswith("google.protobuf."):
            raise BindingError(path, "a message cannot be set from a query parameter")
        if (
            style is JsonStyle.IM
            and field.message_type.full_name == "google.protobuf.Timestamp"
            and texts[0].isdigit()
            and len(texts[0]) <= 15
        ):
            # The IM clients' times: epoch milliseconds (an RFC 3339 time is never all digits).
            getattr(target, field.name).FromMilliseconds(int(texts[0]))
            return True
        # Well-known types take their JSON form: an RFC 3339 time, "1.5s", a wrapper's value.
        value: Any = texts[0]
        if field.message_type.full_name.endswith("Value") and field.message_type.fields:
            value = _scalar(field.message_type.fields_by_name["value"], texts[0], path, style)
        try:
            json_format.ParseDict(value, getattr(target, field.name))
        except json_format.ParseError as error:
            raise BindingError(path, f"invalid value {texts[0]!r}: {error}") from None
        return True
    if field.is_repeated:
        getattr(target, field.name).extend(_scalar(field, text, path, style) for text in texts)
        return True
    if len(texts) != 1:
        raise BindingError(path, f"expected one value, got {len(texts)}")
    setattr(target, field.name, _scalar(field, texts[0], path, style))
    return True


# JSON nested deeper than this is refused (no message of the API nests so deep).
MAX_JSON_DEPTH = 64


def _nesting(raw: bytes) -> int:
    """How deep the JSON text's arrays and objects nest (brackets inside strings aside)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # cannot be deeper: skip the walk
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


HTTP_BODY = "google.api.HttpBody"


def bind_body(
    message: Message,
    body_field: str,
    raw: bytes,
    style: JsonStyle,
    *,
    content_type: str = "",
    strict: bool = False,
    patch: bool = False,
    rewrite: Callable[[str, Any], Any] | None = None,
) -> list[str] | None:
    """Binds the body; for a PATCH of a request with an `update_mask`, returns the paths its
    body holds (for fill_update_mask, once the query had its say), else None."""
    target_of_body: Message = message
    field: FieldDescriptor | None = None
    if body_field != "*":
        resolved = _resolve(message, body_field)
        if resolved is None:
            raise BindingError(body_field, "no such field")
        parent, field = resolved
        if field.message_type is not None and not field.is_repeated:
            target_of_body = getattr(parent, field.name)
    if descriptor_of(target_of_body).full_name == HTTP_BODY:
        # Raw bytes, as they came, with their type (grpc-gateway's HttpBody marshaler).
        target_of_body.content_type = content_type  # type: ignore[attr-defined]
        target_of_body.data = raw  # type: ignore[attr-defined]
        return None
    if not raw.strip():
        return None  # grpc-gateway treats an empty body as an empty message
    if _nesting(raw) > MAX_JSON_DEPTH:
        raise BindingError("body", f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise BindingError("body", f"not valid JSON: {error}") from None
    if rewrite is not None:
        value = rewrite(descriptor_of(message).full_name, value)
    try:
        if body_field == "*":
            if not isinstance(value, dict):
                raise BindingError("body", "expected a JSON object")
            if strict:
                _refuse_unknown(value, descriptor_of(message), "")
            from_json(value, message, style)
            return None
        assert field is not None
        if field.message_type is not None and not field.is_repeated:
            if not isinstance(value, dict) and not field.message_type.full_name.startswith("google.protobuf."):
                raise BindingError("body", f"expected a JSON object ({field.message_type.name})")
            if strict:
                _refuse_unknown(value, field.message_type, f"{body_field}.")
            from_json(value, target_of_body, style)
            if patch and isinstance(value, dict) and _has_update_mask(message):
                return _paths(value, field.message_type, "")
        else:
            from_json({field.name: value}, parent, style)
    except json_format.ParseError as error:
        raise BindingError("body", str(error)) from None
    except RecursionError:
        raise BindingError("body", f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    return None


def _refuse_unknown(value: Any, descriptor: Descriptor, prefix: str) -> None:
    """BindingError naming the first field of a JSON object its message does not have."""
    if not isinstance(value, dict) or descriptor.full_name.startswith("google.protobuf."):
        return
    for key, item in value.items():
        field = _find_field(descriptor, key)
        if field is None:
            raise BindingError(f"{prefix}{key}", "unknown field")
        message = field.message_type
        if message is None or message.GetOptions().map_entry:
            continue
        for element in item if isinstance(item, list) else [item]:
            _refuse_unknown(element, message, f"{prefix}{field.name}.")


def _has_update_mask(message: Message) -> bool:
    field = descriptor_of(message).fields_by_name.get("update_mask")
    return (
        field is not None
        and field.message_type is not None
        and field.message_type.full_name == "google.protobuf.FieldMask"
    )


def fill_update_mask(message: Message, paths: list[str]) -> None:
    """grpc-gateway's FieldMaskFromRequestBody: an `update_mask` the client left empty names
    the fields the PATCH body holds, nested objects as dotted paths (maps and well-known
    types whole)."""
    mask = getattr(message, "update_mask")  # noqa: B009 (any request message with a mask)
    if not mask.paths:
        mask.paths.extend(paths)


def _paths(value: dict[str, Any], descriptor: Descriptor, prefix: str) -> list[str]:
    out: list[str] = []
    for key, item in value.items():
        field = _find_field(descriptor, key)
        if field is None:
            continue
        path = prefix + field.name
        message = field.message_type
        if (
            isinstance(item, dict)
            and item
            and message is not None
            and not message.GetOptions().map_entry
            and not message.full_name.startswith("google.protobuf.")
        ):
            out += _paths(item, message, path + ".")
        else:
            out.append(path)
    return out


def bind_query(
    message: Message,
    params: Iterable[tuple[str, str]],
    bound: set[str],
    style: JsonStyle,
    *,
    split_commas: bool,
    strict: bool = False,
    known: frozenset[str] = frozenset(),
) -> None:
    """Sets fields from query parameters, skipping those already bound by path or body (and
    the parameters in `known`, which are the gateway's own)."""
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        grouped.setdefault(key, []).append(value)
    for key, values in grouped.items():
        if key in known:
            continue
        if key in bound or any(key.startswith(prefix + ".") for prefix in bound):
            if strict and _resolve(message, key) is None:
                raise BindingError(key, "unknown query parameter")
            continue
        resolved = _resolve(message, key)
        if resolved is None:
            if strict:
                raise BindingError(key, "unknown query parameter")
            continue  # unknown parameters are ignored, as grpc-gateway does
        if split_commas and resolved[1].is_repeated:
            values = [part for value in values for part in value.split(",") if part]
        set_from_text(message, key, values, style)


def bind_path(message: Message, variables: Mapping[str, str], style: JsonStyle) -> None:
    for path, value in variables.items():
        if not set_from_text(message, path, [value], style):
            raise BindingError(path, "no such field")


class Remembered(Generic[K, V]):
    """What was worked out of a request (its routes, its bound message, its read), by what
    it came from: asked again, it is not worked out again. At most `kept` entries, the
    oldest forgotten first, each of a request of at most `chars` characters (`keep` is
    told its size): a client varying its requests costs itself the work, never memory."""

    def __init__(self, kept: int, chars: int) -> None:
        self._kept, self._chars = kept, chars
        self._values: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    def keep(self, key: K, value: V, size: int) -> None:
        if size > self._chars:
            return
        if len(self._values) >= self._kept:
            del self._values[next(iter(self._values))]
        self._values[key] = value
