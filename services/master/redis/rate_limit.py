"""Per-key request rates counted in Redis, so that several masters share one budget per
API key (rate_limit.py's token bucket, kept in Redis and taken by one script, with Redis's
own clock so that the masters' clocks do not matter).

    <p>:rate:{<key id>}     hash: tokens, at (seconds), expiring once the bucket is full again

When Redis does not answer, each master falls back to its own bucket (the limit is then
per master, as it was before) rather than refusing or letting everything through.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.exceptions import RedisError

from services.common.rate_limit import RateLimiter

log = logging.getLogger(__name__)

# KEYS[1] the key's bucket; ARGV[1] the rate a second, ARGV[2] the burst. Returns the
# seconds until a token is there ("0" when one was taken).
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


class SharedRateLimiter:
    """A RateLimiter whose buckets are in Redis; `take` is awaited."""

    def __init__(self, client: Any, prefix: str, local: RateLimiter) -> None:
        self.rate, self.burst = local.rate, local.burst
        self._local = local
        self._prefix = prefix
        self._take = client.register_script(_TAKE)
        self._warned_at = 0.0

    async def take(self, key: str) -> float:
        if self.rate <= 0 or not key:
            return 0.0
        try:
            return float(await self._take(keys=[f"{self._prefix}:rate:{{{key}}}"], args=[self.rate, self.burst]))
        except (RedisError, OSError) as error:
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("rates counted by this master alone: Redis does not answer (%s)", error)
            return self._local.take(key)
