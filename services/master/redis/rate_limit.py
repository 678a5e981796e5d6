"""Per-key request rates counted in Redis, so that several masters share one budget per
API key (rate_limit.py's token bucket, kept in Redis and taken by one script, with Redis's
own clock so that the masters' clocks do not matter).

    <p>:rate:{<key id>}     hash: tokens, at (seconds), expiring once the bucket is full again

When Redis does not answer, each master falls back to its own bucket (the limit is then
per master, as it was before) rather than refusing or letting everything through.
"""

from __future__ import annotations

import logging
from typing import Any

from services.common.logs import Throttle
from services.common.rate_limit import RateLimiter
from services.master.redis.errors import FAILURES

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
        self._alone = Throttle(60)

    async def take(self, key: str) -> float:
        if self.rate <= 0 or not key:
            return 0.0
        try:
            return float(await self._take(keys=[f"{self._prefix}:rate:{{{key}}}"], args=[self.rate, self.burst]))
        except FAILURES as error:
            if self._alone.due():
                log.warning("rates counted by this master alone: Redis does not answer (%s)", error)
            return self._local.take(key)


# KEYS[1] the key's open streams (sorted set: seat -> expiry, ms); ARGV[1] the seat,
# ARGV[2] the most a key may hold, ARGV[3] how long a seat lasts unless renewed (ms).
# Returns 1 when the seat is taken, 0 when the key holds the most already.
_SEAT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# KEYS[1] the key's open streams; ARGV[1] the seat, ARGV[2] how long it lasts from now (ms).
_RENEW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# A seat lasts this long unless renewed: a master that dies frees its streams' seats by then.
SEAT_SECONDS = 30.0


class SharedStreamSeats:
    """How many event streams a key holds, counted over every master: a seat per stream in
    Redis, renewed while the stream is open and lapsing if its master dies. While Redis
    does not answer, a stream is let open (the master's own count still bounds it)."""

    def __init__(self, client: Any, prefix: str, seconds: float = SEAT_SECONDS) -> None:
        self.seconds = seconds
        self._client = client
        self._prefix = prefix
        self._seat = client.register_script(_SEAT)
        self._renew = client.register_script(_RENEW)

    def _key(self, key_id: str) -> str:
        return f"{self._prefix}:streams:{{{key_id}}}"

    async def take(self, key_id: str, seat: str, most: int) -> bool:
        try:
            return bool(int(await self._seat(keys=[self._key(key_id)], args=[seat, most, int(self.seconds * 1000)])))
        except FAILURES as error:
            log.warning("event streams counted by this master alone: Redis does not answer (%s)", error)
            return True

    async def renew(self, key_id: str, seat: str) -> None:
        try:
            await self._renew(keys=[self._key(key_id)], args=[seat, int(self.seconds * 1000)])
        except FAILURES:
            pass  # lapses by itself if Redis stays away

    async def release(self, key_id: str, seat: str) -> None:
        try:
            await self._client.zrem(self._key(key_id), seat)
        except FAILURES:
            pass
