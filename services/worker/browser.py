"""How imsync launches Chromium through Playwright: Debian's build where there is one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Without the networking flags Chromium keeps calling home, and on a closed network it
# fails loudly doing so.
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """IMSYNC_CHROMIUM, else Debian's /usr/bin/chromium, else None (Playwright's own build)."""
    wanted = os.environ.get("IMSYNC_CHROMIUM")
    if wanted:
        return wanted
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def launch_options(*, headless: bool = True) -> dict[str, Any]:
    options: dict[str, Any] = {"headless": headless, "args": list(CHROMIUM_FLAGS)}
    path = chromium_path()
    if path is not None:
        options["executable_path"] = path
    return options
