"""The `imsync` command: `imsync [--log-level L] [--log-format F] COMMAND [options]`
(`arguments.py` says what each takes, `commands.py` runs it)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.common import logs
from services.common.version import imsync_version

from .arguments import parser
from .commands import RUN


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.version:
        print(f"imsync {imsync_version()}")
        return 0
    if args.command is None:
        parser().print_usage(sys.stderr)
        print("imsync: name a command (imsync --help lists them)", file=sys.stderr)
        return 2
    logs.setup(args.log_level, args.log_format)
    try:
        return RUN[args.command](args)
    except KeyboardInterrupt:
        return 0
