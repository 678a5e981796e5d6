"""The Redis store's share of the fleet (model/fleet.py): two hashes in one hash slot.

    <p>:{fleet}:accounts    account id -> serialized imsync.v1.ManagedAccount
    <p>:{fleet}:sessions    account id -> its sealed session (auth/session_keys.py)
    <p>:{fleet}:version     a counter every change of an account advances

The accounts are read by every master's scheduler each second: a master keeps the list
it read with the version it read it at, and reads it again only when the version moved
(one GET a round in the common case, instead of the whole hash).

A save or delete is one script, so that an account removed by one master while another
saves its session leaves no session behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imsync.v1 import fleet_pb2 as fl
from services.master.model import fleet
from services.master.model.errors import AlreadyExists, NotFound, ResourceExhausted
from services.master.redis.base import _redis_errors
from services.master.redis.templates import Templates

# KEYS: accounts, version. ARGV: id, body, "1" to create ("0" to update), the most accounts.
# Returns 1, or -1 the id exists, -2 no such id, -3 too many.
_SAVE = """
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if ARGV[3] == '1' then
  if exists then return -1 end
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return -3 end
elseif not exists then
  return -2
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
"""

# KEYS: sessions, accounts. ARGV: id, sealed. 1, or 0 when the account is not managed.
_SAVE_SESSION = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class Fleet(Templates):
    _fleet_save: Any = None
    _session_save: Any = None
    # The accounts as last read, and the version they were read at.
    _fleet_read: tuple[bytes | None, list[fl.ManagedAccount]] | None = None

    @property
    def _fleet_keys(self) -> tuple[str, str]:
        tag = f"{self.prefix}:{{fleet}}"
        return f"{tag}:accounts", f"{tag}:sessions"

    @property
    def _fleet_version_key(self) -> str:
        return f"{self.prefix}:{{fleet}}:version"

    @_redis_errors
    async def list_managed_accounts(self) -> list[fl.ManagedAccount]:
        version = await self.redis.get(self._fleet_version_key)
        if self._fleet_read is not None and self._fleet_read[0] == version and version is not None:
            return list(self._fleet_read[1])
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self._fleet_version_key)
            pipe.hgetall(self._fleet_keys[0])
            version, raw = await pipe.execute()
        accounts = sorted((fl.ManagedAccount.FromString(body) for body in raw.values()), key=lambda a: a.account_id)
        self._fleet_read = (version, accounts)
        return list(accounts)

    @_redis_errors
    async def save_managed_account(self, account: fl.ManagedAccount, *, create: bool) -> fl.ManagedAccount:
        if self._fleet_save is None:
            self._fleet_save = self.redis.register_script(_SAVE)
        args = [account.account_id, account.SerializeToString(), "1" if create else "0", fleet.MAX_ACCOUNTS]
        result = int(await self._fleet_save(keys=[self._fleet_keys[0], self._fleet_version_key], args=args))
        if result == -1:
            raise AlreadyExists(f"account {account.account_id!r} exists", field="account.account_id")
        if result == -2:
            raise NotFound(f"account {account.account_id!r} is not managed")
        if result == -3:
            raise ResourceExhausted(f"the fleet has {fleet.MAX_ACCOUNTS} accounts already; remove one first")
        self.wrote()
        # Not in the script: the account's keys live in another hash slot. A master that
        # dies in between has not answered; the update asked again mends it.
        await self._mirror_fleet(account.account_id, account)
        return account

    @_redis_errors
    async def delete_managed_account(self, account_id: str) -> None:
        accounts, sessions = self._fleet_keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(accounts, account_id)
            pipe.hdel(sessions, account_id)
            pipe.incr(self._fleet_version_key)
            removed, _, _ = await pipe.execute()
        if not int(removed):
            raise NotFound(f"account {account_id!r} is not managed")
        self.wrote()
        await self._mirror_fleet(account_id, None)

    async def _managed(self, account_id: str) -> fl.ManagedAccount | None:
        body: Any = await self.redis.hget(self._fleet_keys[0], account_id)
        return fl.ManagedAccount.FromString(body) if body is not None else None

    async def _mirror_fleet(self, account_id: str, managed: fl.ManagedAccount | None) -> None:
        """Shows the account's fleet entry on it (model/fleet.py's mirror), when Redis holds
        the account."""
        await self._presence_change(account_id, lambda presence: fleet.mirror(presence, managed), only_existing=True)

    @_redis_errors
    async def session_state(self, account_id: str) -> bytes | None:
        found = await self.redis.hget(self._fleet_keys[1], account_id)
        return found.encode() if isinstance(found, str) else found

    @_redis_errors
    async def save_session_state(self, account_id: str, sealed: bytes) -> None:
        if self._session_save is None:
            self._session_save = self.redis.register_script(_SAVE_SESSION)
        accounts, sessions = self._fleet_keys
        if not int(await self._session_save(keys=[sessions, accounts], args=[account_id, sealed])):
            raise NotFound(f"account {account_id!r} is not managed")
        self.wrote()

    @_redis_errors
    async def sessions_kept(self, account_ids: Sequence[str]) -> set[str]:
        if not account_ids:
            return set()
        found = await self.redis.hmget(self._fleet_keys[1], list(account_ids))
        return {a for a, sealed in zip(account_ids, found, strict=True) if sealed is not None}
