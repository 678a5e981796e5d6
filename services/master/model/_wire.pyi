from collections.abc import Sequence
from typing import Any

def take_messages(
    data: bytes,
    path: tuple[int, ...],
    account_id: str,
    min_seconds: int,
    max_seconds: int,
    place: int,
    items: Sequence[Any],
    places: dict[str, Any],
    keys: list[bytes],
    groups: dict[str, list[bytes]],
    inbound_keys: list[bytes],
    inbound_conversations: list[str],
    inbound_ids: list[str],
    undirected: list[tuple[bytes, Any]],
) -> bool: ...
