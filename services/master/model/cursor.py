"""Opaque keyset cursors.

A cursor is the sort key of the last item of a page, tagged with the index it belongs to.
The next page starts strictly after that key, so items that arrive between two pages never
shift it: nothing is skipped or repeated, unlike the offsets of the system imsync replaces.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Final

import orjson

from services.master.model.errors import InvalidArgument

SortKey = tuple[int | str, ...]


class Newest(str):
    """An id in a sort key that orders the other way: among items of the same instant (a
    platform's times are whole seconds), the larger id, the later one, comes first, as
    the newer items before it do."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return str.__gt__(self, other)  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        return str.__lt__(self, other)  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        return str.__ge__(self, other)  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:
        return str.__le__(self, other)  # type: ignore[operator]


_VERSION: Final = 1
# base64's alphabet to the URL-safe one (as base64.urlsafe_b64encode, in one step).
_URL_SAFE: Final = bytes.maketrans(b"+/", b"-_")


def encode(index: str, key: SortKey) -> str:
    # Compact UTF-8 JSON, as json.dumps(separators=(",", ":"), ensure_ascii=False) writes it.
    raw = orjson.dumps([_VERSION, index, *key])
    return binascii.b2a_base64(raw, newline=False).translate(_URL_SAFE).rstrip(b"=").decode()


def decode(cursor: str, index: str, shape: Sequence[type]) -> SortKey | None:
    """Returns the key a cursor resumes after, or None for the first page ("" or "0").

    `shape` lists the types of the key's parts; a cursor of another index or shape is
    refused as INVALID_ARGUMENT on the `cursor` field.
    """
    if cursor in ("", "0"):
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidArgument("malformed cursor", field="cursor") from None
    if (
        not isinstance(parts, list)
        or len(parts) != len(shape) + 2
        or parts[0] != _VERSION
        or parts[1] != index
        or not all(
            type(value) is (str if kind is Newest else kind) for value, kind in zip(parts[2:], shape, strict=True)
        )
    ):
        raise InvalidArgument("cursor does not belong to this list", field="cursor")
    return tuple(Newest(value) if kind is Newest else value for value, kind in zip(parts[2:], shape, strict=True))
