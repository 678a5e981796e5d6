"""LoginService: the accounts' platform logins, relayed between the worker and an operator.

The worker reports what the platform's login page asks (a QR code, an SMS code prompt) in
its account status; it is kept with the account's presence and shown here only, to keys
with the login scope. A code an operator types goes to the owning worker as a command,
which the journal does not keep and no event or reply lookup shows.
"""

from __future__ import annotations

import re
import uuid

from imsync.v1 import logins_pb2 as lg
from imsync.v1 import logins_pb2_grpc, sync_pb2
from services.master.api.queries import Context, Guarded
from services.master.auth.api_keys import Access, ApiKeys
from services.master.model.commands import Commands
from services.master.model.errors import InvalidArgument
from services.master.model.store import Store

_CODE = re.compile(r"[0-9A-Za-z]{1,16}")
# A code is worth typing for minutes at most; a command nobody performed by then fails.
_CODE_TTL_SECONDS = 120.0


class LoginServicer(Guarded, logins_pb2_grpc.LoginServiceServicer):
    def __init__(self, store: Store, keys: ApiKeys, book: Commands) -> None:
        super().__init__(store, keys)
        self._book = book

    async def _login(self, account_id: str) -> lg.Login:
        presence = await self._store.get_presence(account_id)
        status = presence.status
        login = lg.Login(
            account_id=account_id,
            login_state=status.login_state,
            online=presence.online,
        )
        if status.HasField("login"):
            login.challenge.CopyFrom(status.login)
        if status.last_error_reason.startswith("LOGIN"):
            login.last_error = status.last_error
        return login

    async def GetLogin(self, request: lg.GetLoginRequest, context: Context) -> lg.GetLoginResponse:
        async def find(access: Access) -> lg.Login:
            return await self._login(self._required_account(access, request.account_id))

        return lg.GetLoginResponse(login=await self._answer(context, find))

    async def SubmitLoginCode(self, request: lg.SubmitLoginCodeRequest, context: Context) -> lg.SubmitLoginCodeResponse:
        async def submit(access: Access) -> str:
            account_id = self._required_account(access, request.account_id)
            code = request.code.strip()
            if not _CODE.fullmatch(code):
                raise InvalidArgument("1 to 16 letters or digits, as the platform sent it", field="code")
            await self._store.get_presence(account_id)  # NotFound for an account never heard of
            return await self._send(account_id, sync_pb2.Command(submit_login_code=sync_pb2.SubmitLoginCode(code=code)))

        return lg.SubmitLoginCodeResponse(request_id=await self._answer(context, submit))

    async def RestartLogin(self, request: lg.RestartLoginRequest, context: Context) -> lg.RestartLoginResponse:
        async def restart(access: Access) -> str:
            account_id = self._required_account(access, request.account_id)
            await self._store.get_presence(account_id)
            return await self._send(account_id, sync_pb2.Command(restart_login=sync_pb2.RestartLogin()))

        return lg.RestartLoginResponse(request_id=await self._answer(context, restart))

    def _required_account(self, access: Access, account_id: str) -> str:
        if not account_id:
            raise InvalidArgument("required", field="account_id")
        return self._account(access, account_id)

    async def _send(self, account_id: str, command: sync_pb2.Command) -> str:
        command.request_id = f"login-{uuid.uuid4()}"
        command.account_id = account_id
        command.expires_at.GetCurrentTime()
        command.expires_at.FromNanoseconds(command.expires_at.ToNanoseconds() + int(_CODE_TTL_SECONDS * 1e9))
        await self._book.submit(command)
        return command.request_id
