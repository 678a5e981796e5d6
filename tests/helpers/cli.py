"""The `imsync` command line, run as a person runs it: its own process, its output kept."""

from __future__ import annotations

import subprocess
import sys


def imsync(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=timeout
    )
