"""The installed synthmon's version, for ``--version``, logs and ``synthmon_build_info``."""

from __future__ import annotations


def synthmon_version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare checkout)."""
    # Imported here: reading distribution metadata costs tens of milliseconds that a command
    # which never shows the version (``synthmon --help``, ``history``) must not pay.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("synthmon")
    except PackageNotFoundError:
        return "unknown"
