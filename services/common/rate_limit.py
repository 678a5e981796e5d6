"""A request rate per API key: a token bucket per key, refilled continuously.

A key over its rate is answered RESOURCE_EXHAUSTED with a RetryInfo detail saying when to
try again (the gateway turns it into 429 with Retry-After). Clients of a master without
API keys are not limited here: behind one gateway they would all share one bucket.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def take(self, key: str) -> float:
        """Takes one request's token; 0 when allowed, else the seconds until one is there."""
        if self.rate <= 0 or not key:
            return 0.0
        now = self._clock()
        tokens, then = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate
