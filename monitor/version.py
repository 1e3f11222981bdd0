"""The installed synthmon's version, for ``--version``, logs and ``synthmon_build_info``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def synthmon_version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare checkout)."""
    try:
        return version("synthmon")
    except PackageNotFoundError:
        return "unknown"
