"""How every imsync process logs: one line per record, as text or as one JSON object, with
the request id of the request it was written for.

A request id comes with the request (`X-Request-Id` at the gateway, `x-request-id`
metadata at the master) or is made by the gateway; it is kept in a context variable while
the request is handled, so that every line either side writes for it carries it. A
multi-line message or traceback (Playwright's errors are) is folded into its one line:
a log shipper reading lines never splits a record.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import re
import sys
import time
from collections.abc import Iterable

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("imsync_request_id", default="")
# "text" or "json", as setup() was told: progress lines (say) follow it.
style = "text"
_progress = logging.getLogger("imsync.progress")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
HEADER = "x-request-id"


def new_request_id() -> str:
    # Not a secret (it is echoed to the caller and logged): the cheap generator will do.
    return f"{random.getrandbits(64):016x}"


def request_id_of(value: str | None) -> str:
    """The request id a caller gave, when it is one a log line can carry safely; else a new one."""
    return value if value is not None and _REQUEST_ID.fullmatch(value) else new_request_id()


def request_id_from(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    return next((str(v) for k, v in metadata if k == HEADER and isinstance(v, str) and _REQUEST_ID.fullmatch(v)), "")


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = getattr(record, "request_id", "")
        if rid:
            text += f" [request {rid}]"
        return text.replace("\n", " | ")  # one record, one line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "")
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def say(text: str) -> None:
    """A progress line for whoever watches the process: as it is on stdout (the demo's
    output), or, with JSON logs, a log record like any other."""
    if style == "json":
        _progress.info(text)
    else:
        print(text.replace("\n", " | "), flush=True)


def setup(level: str = "INFO", format: str = "text") -> None:
    """Configures the root logger: one line a record on stderr, text or JSON."""
    global style
    style = format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    handler.addFilter(_WithRequestId())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that say a line for every request they make would drown the service's own.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


class Throttle:
    """For a warning that could come at every request or round: due at most once every
    `seconds` (the first time at once)."""

    def __init__(self, seconds: float) -> None:
        self._every = seconds
        self._at = -float("inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._at < self._every:
            return False
        self._at = now
        return True


class Outage:
    """What a loop running every second says while something it needs is out of reach
    (Redis restarting, say): one warning as it goes and one line once the loop works
    again, not a warning, or a traceback, at every turn. The health check says it too."""

    def __init__(
        self, log: logging.Logger, what: str, out_of_reach: tuple[type[BaseException], ...] = (Exception,)
    ) -> None:
        self._log = log
        self._what = what
        self._out_of_reach = out_of_reach
        self._since: float | None = None

    def failed(self, error: BaseException) -> None:
        """A turn failed (called in its except block): what is not `out_of_reach` is a
        defect, logged whole every time."""
        if not isinstance(error, self._out_of_reach):
            self._log.exception("%s failed", self._what)
            return
        if self._since is not None:
            self._log.debug("%s: still out of reach: %s", self._what, _detail(error))
            return
        self._since = time.monotonic()
        self._log.warning("%s: out of reach (%s); trying again every second", self._what, _detail(error))

    def succeeded(self) -> None:
        if self._since is not None:
            self._log.warning(
                "%s: working again, after %.1f s out of reach", self._what, time.monotonic() - self._since
            )
            self._since = None


def _detail(error: BaseException) -> str:
    """What went wrong, from the error the store raised for it (its cause, where it wrapped
    one: a client is told less than the log)."""
    cause = error.__cause__ if error.__cause__ is not None else error
    return f"{type(cause).__name__}: {cause}"
