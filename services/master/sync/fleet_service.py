"""FleetService: the managed accounts and the workers that take them (model/fleet.py,
sync/fleet.py). Needs the `admin` scope; a key limited to some accounts sees and changes
only those."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from imsync.v1 import fleet_pb2 as fl
from imsync.v1 import fleet_pb2_grpc
from services.master.auth.api_keys import Access
from services.master.model import fleet
from services.master.model.errors import InvalidArgument, NotFound
from services.master.rpc.access import answered
from services.master.sync.fleet import worker_of
from services.master.sync.hub import SyncHub

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]


class FleetServicer(fleet_pb2_grpc.FleetServiceServicer):
    def __init__(self, hub: SyncHub) -> None:
        self._hub = hub
        self._store = hub.store

    async def _answer(self, context: Context, compute: Callable[[Access], Awaitable[T]]) -> T:
        return await answered(self._store, compute)

    async def _shown(self, accounts: list[fl.ManagedAccount]) -> list[fl.ManagedAccount]:
        """The accounts as answers show them: no password; the worker holding each, and
        whether a session is kept."""
        ids = [a.account_id for a in accounts]
        owners = {}
        for account_id in ids:
            lease = self._hub.leases.holder(account_id)
            if lease is not None:
                owners[account_id] = lease.worker_id
        if self._hub.shared is not None:
            owners = {**await self._hub.shared.owners([a for a in ids if a not in owners]), **owners}
        kept = await self._store.sessions_kept(ids)
        shown = []
        for account in accounts:
            answer = fleet.shown(account)
            answer.worker_id = owners.get(account.account_id, "")
            answer.has_session = account.account_id in kept
            shown.append(answer)
        return shown

    async def _find(self, access: Access, account_id: str, field: str = "account_id") -> fl.ManagedAccount:
        if not account_id:
            raise InvalidArgument("required", field=field)
        access.check(account_id)
        found = {a.account_id: a for a in await self._store.list_managed_accounts()}.get(account_id)
        if found is None:
            raise NotFound(f"account {account_id!r} is not managed")
        return found

    async def ListManagedAccounts(
        self, request: fl.ListManagedAccountsRequest, context: Context
    ) -> fl.ListManagedAccountsResponse:
        async def compute(access: Access) -> list[fl.ManagedAccount]:
            mine = [a for a in await self._store.list_managed_accounts() if access.may_use(a.account_id)]
            return await self._shown(mine)

        return fl.ListManagedAccountsResponse(accounts=await self._answer(context, compute))

    async def GetManagedAccount(
        self, request: fl.GetManagedAccountRequest, context: Context
    ) -> fl.GetManagedAccountResponse:
        async def compute(access: Access) -> fl.ManagedAccount:
            return (await self._shown([await self._find(access, request.account_id)]))[0]

        return fl.GetManagedAccountResponse(account=await self._answer(context, compute))

    async def CreateManagedAccount(
        self, request: fl.CreateManagedAccountRequest, context: Context
    ) -> fl.CreateManagedAccountResponse:
        async def compute(access: Access) -> fl.ManagedAccount:
            if not request.HasField("account"):
                raise InvalidArgument("required", field="account")
            access.check(request.account.account_id, "account.account_id")
            account = fleet.check(request.account)
            saved = await self._store.save_managed_account(fleet.stamped(account, create=True), create=True)
            return (await self._shown([saved]))[0]

        return fl.CreateManagedAccountResponse(account=await self._answer(context, compute))

    async def UpdateManagedAccount(
        self, request: fl.UpdateManagedAccountRequest, context: Context
    ) -> fl.UpdateManagedAccountResponse:
        async def compute(access: Access) -> fl.ManagedAccount:
            if not request.HasField("account"):
                raise InvalidArgument("required", field="account")
            if request.account.account_id and request.account.account_id != request.account_id:
                raise InvalidArgument(
                    f"not the account_id {request.account_id!r} of the request", field="account.account_id"
                )
            old = await self._find(access, request.account_id)
            new = fleet.check(fleet.updated(old, request.account, request.update_mask))
            new.create_time.CopyFrom(old.create_time)
            saved = await self._store.save_managed_account(fleet.stamped(new, create=False), create=False)
            return (await self._shown([saved]))[0]

        return fl.UpdateManagedAccountResponse(account=await self._answer(context, compute))

    async def DeleteManagedAccount(
        self, request: fl.DeleteManagedAccountRequest, context: Context
    ) -> fl.DeleteManagedAccountResponse:
        async def compute(access: Access) -> None:
            if not request.account_id:
                raise InvalidArgument("required", field="account_id")
            access.check(request.account_id)
            await self._store.delete_managed_account(request.account_id)

        await self._answer(context, compute)
        return fl.DeleteManagedAccountResponse()

    async def ListWorkers(self, request: fl.ListWorkersRequest, context: Context) -> fl.ListWorkersResponse:
        async def compute(access: Access) -> list[fl.FleetWorker]:
            workers = [worker_of(session) for session in self._hub.scheduler.workers()]
            shared = self._hub.shared
            if shared is not None:
                # Several masters: this one's workers as they are, the others' as announced.
                workers += [w for w in await shared.fleet_workers() if w.master_id != shared.master_id]
            for worker in workers:
                kept = [a for a in worker.account_ids if access.may_use(a)]
                del worker.account_ids[:]
                worker.account_ids.extend(kept)
            return sorted(workers, key=lambda w: (w.worker_id, w.master_id))

        return fl.ListWorkersResponse(workers=await self._answer(context, compute))
