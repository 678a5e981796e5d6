"""imsync's version, as installed (pyproject.toml's)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def imsync_version() -> str:
    try:
        return version("imsync")
    except PackageNotFoundError:
        return "unknown (not installed)"
