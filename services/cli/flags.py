"""What the `imsync` command's flags share: each with an environment variable and a
default, said in its help (arguments.py builds the parser)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, TypeVar

from services.common.addresses import split_host_port

T = TypeVar("T")

MiB = 1024 * 1024


class _Flags:
    """Adds flags to a parser, each read from its environment variable when not given."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def __call__(
        self, name: str, env: str, default: Any, help: str, *, type: Callable[[str], Any] = str, **extra: Any
    ) -> None:
        # An environment value is the default as text: argparse converts it as it converts a
        # flag given, so a bad one is a usage error naming the flag, not a traceback.
        raw = os.environ.get(env)
        value = raw if raw is not None else default
        shown = f"; default {default}" if default not in ("", None) else ""
        if type in (int, float):  # a count, a size, a rate: never below 0
            type = at_least(type, 0)
        self.parser.add_argument(name, type=type, default=value, help=f"{help} (env {env}{shown})", **extra)

    def listen(self, name: str, env: str, default: str, help: str) -> None:
        """A HOST:PORT flag a server listens on ("" where none is a choice)."""
        self(name, env, default, help, type=listen_address, metavar="HOST:PORT")


def at_least(convert: Callable[[str], T], low: float, *, above: bool = False) -> Callable[[str], T]:
    """`convert` (int or float) refusing a value under `low` (with `above`, `low` too)."""

    def check(text: str) -> T:
        value = convert(text)
        if value < low or (above and value == low):  # type: ignore[operator]
            raise argparse.ArgumentTypeError(f"{'more than' if above else 'at least'} {low:g}, not {text}")
        return value

    check.__name__ = convert.__name__  # argparse's "invalid int value: 'x'"
    return check


# Seconds something waits or lasts: 0 or less would spin or lapse at once.
seconds = at_least(float, 0, above=True)


def listen_address(text: str) -> str:
    """A HOST:PORT to listen on (port 0: any free one), or "" for none."""
    if text:
        try:
            split_host_port(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return text


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _level(text: str) -> str:
    if text.upper() not in _LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is none of {', '.join(_LEVELS)}")
    return text.upper()


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--log-level and --log-format, on the command and on each subcommand (where they
    leave the command's values alone unless given)."""
    level: Any = os.environ.get("IMSYNC_LOG_LEVEL", "INFO") if top else argparse.SUPPRESS
    style: Any = os.environ.get("IMSYNC_LOG_FORMAT", "text") if top else argparse.SUPPRESS
    parser.add_argument(
        "--log-level",
        default=level,
        type=_level,
        help="DEBUG, INFO, WARNING or ERROR (env IMSYNC_LOG_LEVEL; default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=style,
        help="text: one line per record; json: one object per line, a multi-line error folded into one field "
        "(env IMSYNC_LOG_FORMAT; default text)",
    )


def _clients(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """What browsers on other origins and the old IM clients need of a gateway."""
    env = os.environ.get("IMSYNC_CORS_ALLOW_ORIGINS", "")
    parser.add_argument(
        f"--{prefix}cors-allow-origin",
        action="append",
        metavar="ORIGIN",
        default=[o.strip() for o in env.split(",") if o.strip()],
        help="let pages of this origin (scheme://host[:port]) call the API from a browser; repeat for several; "
        "* for any (env IMSYNC_CORS_ALLOW_ORIGINS, comma-separated; default none)",
    )
    parser.add_argument(
        f"--{prefix}im-legacy-names",
        action="store_true",
        default=os.environ.get("IMSYNC_IM_LEGACY_NAMES", "") in ("1", "true"),
        help="answer IM clients with the old names too (msg_id, discussion_id, author_id, author_name); "
        "without it a request asks with ?legacy_names=true (env IMSYNC_IM_LEGACY_NAMES)",
    )


def _observed(flag: _Flags) -> None:
    """Where a service's metrics are served, and where its traces go."""
    flag.listen(
        "--metrics-listen",
        "IMSYNC_METRICS_LISTEN",
        "",
        "serve Prometheus metrics at http://HOST:PORT/metrics",
    )
    flag(
        "--otlp-endpoint",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        "export OpenTelemetry traces with OTLP (gRPC) to "
        "this endpoint, e.g. http://127.0.0.1:4317; without it no span is recorded",
        metavar="URL",
    )


def _http(flag: _Flags, prefix: str = "") -> None:
    """The deadlines and connection bounds of an HTTP server (http_guard.py)."""
    flag(
        f"--{prefix}http-header-timeout",
        "IMSYNC_HTTP_HEADER_TIMEOUT",
        10.0,
        "seconds a request's headers may take",
        type=seconds,
        metavar="SECONDS",
    )
    flag(
        f"--{prefix}http-body-timeout",
        "IMSYNC_HTTP_BODY_TIMEOUT",
        30.0,
        "seconds a request's body may take",
        type=seconds,
        metavar="SECONDS",
    )
    flag(
        f"--{prefix}http-keep-alive-timeout",
        "IMSYNC_HTTP_KEEP_ALIVE_TIMEOUT",
        5.0,
        "seconds an idle connection stays open",
        type=seconds,
        metavar="SECONDS",
    )
    flag(
        f"--{prefix}http-max-connections",
        "IMSYNC_HTTP_MAX_CONNECTIONS",
        4096,
        "open connections in all; more are answered 503",
        type=int,
        metavar="N",
    )
    flag(
        f"--{prefix}http-max-connections-per-address",
        "IMSYNC_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
        256,
        "open connections from one address; more are answered 429",
        type=int,
        metavar="N",
    )
