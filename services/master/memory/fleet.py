"""The memory store's share of the fleet (model/fleet.py): the managed accounts and their
sealed sessions in dicts, each change journaled in the journal's `fleet` and `sessions`
tables (a row per account, replaced whole)."""

from __future__ import annotations

from collections.abc import Sequence

from imsync.v1 import fleet_pb2 as fl
from services.master.memory.templates import Templates
from services.master.model import fleet
from services.master.model.errors import AlreadyExists, NotFound, ResourceExhausted


class Fleet(Templates):
    def restore_fleet(self, accounts: list[fl.ManagedAccount], sessions: dict[str, bytes]) -> None:
        """What the journal kept (open_data_dir, after the accounts: their pause is set here)."""
        self._fleet.update({a.account_id: a for a in accounts})
        self._sessions.update({a: s for a, s in sessions.items() if a in self._fleet})
        for account_id, state in self._accounts.items():
            fleet.mirror(state.presence, self._fleet.get(account_id))

    async def list_managed_accounts(self) -> list[fl.ManagedAccount]:
        return sorted(self._fleet.values(), key=lambda a: a.account_id)

    async def save_managed_account(self, account: fl.ManagedAccount, *, create: bool) -> fl.ManagedAccount:
        book = self._fleet
        if create:
            if account.account_id in book:
                raise AlreadyExists(f"account {account.account_id!r} exists", field="account.account_id")
            if len(book) >= fleet.MAX_ACCOUNTS:
                raise ResourceExhausted(f"the fleet has {fleet.MAX_ACCOUNTS} accounts already; remove one first")
        elif account.account_id not in book:
            raise NotFound(f"account {account.account_id!r} is not managed")
        book[account.account_id] = account
        if self.journal is not None:
            self.journal.put_row("fleet", account.account_id, account.SerializeToString())
        self._mirror_fleet(account.account_id)
        return account

    async def delete_managed_account(self, account_id: str) -> None:
        if self._fleet.pop(account_id, None) is None:
            raise NotFound(f"account {account_id!r} is not managed")
        self._sessions.pop(account_id, None)
        if self.journal is not None:
            self.journal.put_row("fleet", account_id, None)
            self.journal.put_row("sessions", account_id, None)
        self._mirror_fleet(account_id)

    async def session_state(self, account_id: str) -> bytes | None:
        return self._sessions.get(account_id)

    async def save_session_state(self, account_id: str, sealed: bytes) -> None:
        if account_id not in self._fleet:
            raise NotFound(f"account {account_id!r} is not managed")
        self._sessions[account_id] = sealed
        if self.journal is not None:
            self.journal.put_row("sessions", account_id, sealed)

    async def sessions_kept(self, account_ids: Sequence[str]) -> set[str]:
        book = self._sessions
        return {a for a in account_ids if a in book}
