"""Account leases across masters, in Redis, with fencing epochs.

A master's own `Leases` decide between the streams it serves; these decide between
masters. A stream's claim in Hello must win both. The Redis lease names the master, the
worker and the stream holding the account and lives a lease duration unless renewed; the
master renews the leases of its live streams a few times per duration, so a master that
dies loses its accounts one duration later, while its worker, reconnecting to another
master, takes them over at once (the same worker may always take over its own account).
Each grant draws a larger epoch from a counter that never expires; every change a stream
commits carries its epoch, and the store's commit script refuses an epoch that is no
longer the lease's (redis_layout.COMMIT): a stream fenced by a newer claim cannot write.
"""

from __future__ import annotations

from imsync.v1 import fleet_pb2 as fl
from services.master.model.leases import AccountOwned, Lease
from services.master.redis.connect import Client
from services.master.redis.errors import any_failure
from services.master.redis.layout import AccountKeys

# KEYS[1] the lease, KEYS[2] the epoch counter; ARGV: master, worker, stream, duration (ms).
# Returns {1, epoch} when granted, {0, worker, ms left} when another worker holds it.
_CLAIM = """
local holder = redis.call('HGET', KEYS[1], 'worker')
if holder and holder ~= ARGV[2] then
  return {0, holder, redis.call('PTTL', KEYS[1])}
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'master', ARGV[1], 'worker', ARGV[2], 'stream', ARGV[3], 'epoch', epoch)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, epoch}
"""

# KEYS[1] the lease; ARGV: epoch, duration (ms). 1 when renewed, 0 when it is someone else's.
_RENEW = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] the lease; ARGV: epoch. Frees the account if the lease is still this one.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


# KEYS[1] the masters' workers (hash: master -> ListWorkersResponse), KEYS[2] until when
# each master's entry holds (hash: master -> ms on Redis's clock); ARGV: master, its
# workers, how long they hold (ms).
_ANNOUNCE = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ms + tonumber(ARGV[3]))
return 1
"""

# KEYS as _ANNOUNCE. The workers of the masters whose entry still holds; the others are
# dropped.
_WORKERS = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local holds = redis.call('HGETALL', KEYS[2])
local found = {}
for i = 1, #holds, 2 do
  if tonumber(holds[i + 1]) < ms then
    redis.call('HDEL', KEYS[1], holds[i])
    redis.call('HDEL', KEYS[2], holds[i])
  else
    local workers = redis.call('HGET', KEYS[1], holds[i])
    if workers then table.insert(found, workers) end
  end
end
return found
"""


class SharedLeases:
    """Leases between masters over one Redis (model/leases.py's SharedLeaseBook)."""

    def __init__(self, client: Client, prefix: str, master_id: str, duration: float) -> None:
        self._redis = client
        self._prefix = prefix
        self.master_id = master_id
        self.duration = duration
        self._claim = client.register_script(_CLAIM)

    def _keys(self, account_id: str) -> AccountKeys:
        return AccountKeys(self._prefix, account_id)

    @property
    def _workers_keys(self) -> list[str]:
        tag = f"{self._prefix}:{{fleet}}"
        return [f"{tag}:workers", f"{tag}:workers-until"]

    async def announce_workers(self, workers: list[fl.FleetWorker]) -> None:
        payload = fl.ListWorkersResponse(workers=workers).SerializeToString()
        await self._redis.eval(_ANNOUNCE, 2, *self._workers_keys, self.master_id, payload, self._ms)

    async def fleet_workers(self) -> list[fl.FleetWorker]:
        found: list[bytes] = await self._redis.eval(_WORKERS, 2, *self._workers_keys)
        return [worker for payload in found for worker in fl.ListWorkersResponse.FromString(payload).workers]

    @property
    def _ms(self) -> str:
        return str(int(self.duration * 1000))

    async def claim(self, account_id: str, worker_id: str, session_id: int) -> int:
        """The account for this stream: its new epoch; raises AccountOwned while another
        worker's lease lives."""
        keys = self._keys(account_id)
        granted, *rest = await self._claim(
            keys=[keys.lease, keys.lease + "-epoch"], args=[self.master_id, worker_id, str(session_id), self._ms]
        )
        if int(granted) == 1:
            return int(rest[0])
        holder, left_ms = rest
        owner = holder.decode() if isinstance(holder, bytes) else str(holder)
        remaining = max(0.0, int(left_ms) / 1000)
        raise AccountOwned(Lease(account_id, owner, 0, 0, 0.0), remaining)

    async def renew(self, held: dict[str, int]) -> list[str]:
        """Renews leases (account -> epoch); returns the accounts whose lease is gone."""
        if not held:
            return []
        # EVAL, not a loaded script: a replica that took over a primary's slots has none of
        # the scripts loaded there (SCRIPT LOAD is not replicated), and a pipeline does not
        # load them again. A context, so that a cancellation gives its connection back.
        async with self._redis.pipeline(transaction=False) as pipe:
            for account_id, epoch in held.items():
                pipe.eval(_RENEW, 1, self._keys(account_id).lease, str(epoch), self._ms)
            results = await pipe.execute()
        return [account_id for account_id, kept in zip(held, results, strict=True) if not int(kept)]

    @any_failure
    async def release(self, held: dict[str, int]) -> None:
        if not held:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for account_id, epoch in held.items():
                pipe.eval(_RELEASE, 1, self._keys(account_id).lease, str(epoch))
            await pipe.execute()

    async def owners(self, account_ids: list[str]) -> dict[str, str]:
        """The worker holding each account's lease, of those some master holds."""
        # A context, so that a cancellation (the master stopping mid-round) gives its
        # connection back.
        async with self._redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                pipe.hget(self._keys(account_id).lease, "worker")
            found = await pipe.execute()
        return {
            account_id: worker.decode() if isinstance(worker, bytes) else str(worker)
            for account_id, worker in zip(account_ids, found, strict=True)
            if worker is not None
        }

    async def alive(self, account_ids: list[str]) -> dict[str, bool]:
        """Whether some master holds each account's lease."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                pipe.exists(self._keys(account_id).lease)
            found = await pipe.execute()
        return {account_id: bool(n) for account_id, n in zip(account_ids, found, strict=True)}
