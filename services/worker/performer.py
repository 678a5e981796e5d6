"""The commands a worker performs for the master: a reply, a login's code. Each is
performed once: one delivered again (the stream broke, the worker restarted) is answered
with the result it had, from memory or from the command log on disk (command_log.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from opentelemetry import trace

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.common.observability import context_from, tracer

from .command_log import CommandLog
from .engine_config import EngineConfig
from .metrics import COMMANDS

log = logging.getLogger(__name__)

CommandHandler = Callable[[sync_pb2.Command], Awaitable[sync_pb2.CommandResult]]

_REPLIES = ("reply_to_comment", "send_message")


class Performer:
    def __init__(
        self,
        config: EngineConfig,
        on_command: CommandHandler | None,
        deliver: Callable[[sync_pb2.SyncDataRequest], None],
    ) -> None:
        self._on_command = on_command
        self._deliver = deliver
        self._remembered = config.remembered_results
        self._results: OrderedDict[str, sync_pb2.CommandResult] = OrderedDict()
        self._log = CommandLog(config.command_log, keep=config.remembered_results) if config.command_log else None
        # The commands being performed, by request.
        self.running: dict[str, asyncio.Task[None]] = {}

    def start(self, command: sync_pb2.Command) -> None:
        """Performs a command the master delivered, unless it is known or under way."""
        # Request ids are per account: two accounts may use the same one.
        key = f"{command.account_id}\n{command.request_id}"
        known = self._results.get(key)
        if known is not None:
            self._deliver(sync_pb2.SyncDataRequest(command_result=known))  # delivered again: same answer
            return
        if key in self.running:
            return
        if command.expires_at.ToNanoseconds() and command.expires_at.ToNanoseconds() < time.time_ns():
            return  # the master has failed it already; performing it now would surprise everyone
        self.running[key] = asyncio.create_task(self._perform(command, key))

    async def _perform(self, command: sync_pb2.Command, key: str) -> None:
        action = command.WhichOneof("action") or "none"
        with tracer.start_as_current_span(
            f"perform {action}",
            context=context_from(dict(command.trace_context)),
            kind=trace.SpanKind.CONSUMER,
            attributes={"imsync.account": command.account_id},
        ) as span:
            result = await self._performed(command, key)
            span.set_attribute("imsync.outcome", sync_pb2.CommandOutcome.Name(result.outcome))
        COMMANDS.labels(
            action=action, outcome=sync_pb2.CommandOutcome.Name(result.outcome).removeprefix("COMMAND_OUTCOME_").lower()
        ).inc()
        self._deliver(sync_pb2.SyncDataRequest(command_result=result))

    async def _performed(self, command: sync_pb2.Command, key: str) -> sync_pb2.CommandResult:
        begun = False
        # Replies are written down before they are performed; a login's code never is.
        book = self._log if command.WhichOneof("action") in _REPLIES else None
        try:
            prior = (
                None if book is None else await asyncio.to_thread(book.prior, command.account_id, command.request_id)
            )
            if prior is not None:
                result = prior  # begun before this worker restarted: never performed twice
            else:
                if self._on_command is None:
                    raise RuntimeError("this worker performs no commands")
                if book is not None:
                    await asyncio.to_thread(book.begin, command)
                begun = True
                result = await self._on_command(command)
        except Exception as error:
            log.exception("command %s failed", command.request_id)
            result = sync_pb2.CommandResult(
                outcome=sync_pb2.COMMAND_OUTCOME_FAILED, reason=e.FAILURE_REASON_PLATFORM_ERROR, message=str(error)
            )
        result.request_id = command.request_id
        result.account_id = command.account_id
        if not result.HasField("performed_at"):
            result.performed_at.GetCurrentTime()
        if begun and book is not None:
            try:
                await asyncio.to_thread(book.finish, command.account_id, command.request_id, result)
            except Exception:  # the result still goes to the master, which keeps it
                log.exception("could not record the result of command %s", command.request_id)
        self._results[key] = result
        while len(self._results) > self._remembered:
            self._results.popitem(last=False)
        self.running.pop(key, None)
        return result
