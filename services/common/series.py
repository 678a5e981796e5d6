"""A metric's labelled series, looked up once.

prometheus_client's `labels()` costs more than the increment itself, and the hot paths
(every HTTP request, every sync message, every event) count several series each. Label
values are bounded wherever imsync labels (routes, methods, codes, kinds, accounts up to
--max-accounts), so this map is too.
"""

from __future__ import annotations

from typing import Any

_series: dict[tuple[int, tuple[str, ...]], Any] = {}


def series(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, made once: the values in the order of its label names."""
    key = (id(metric), values)
    found = _series.get(key)
    if found is None:
        found = _series[key] = metric.labels(*values)
    return found
