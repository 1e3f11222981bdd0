"""Durations and timestamps as the store and the CLI speak them.

The store keeps times as float epoch seconds (UTC): the one representation that compares, indexes and
buckets the same way on SQLite and PostgreSQL. Everything above the store uses aware UTC datetimes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


class DurationError(ValueError):
    """A duration string that is not ``<number>[s|m|h|d|w]``."""


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``value``: a number (seconds) or a string such as ``"30m"``, ``"24h"``, ``"7d"``."""
    if isinstance(value, bool):
        raise DurationError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise DurationError(f"not a duration: {value!r} (expected e.g. 90, 30s, 15m, 24h, 7d)")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 0:
        raise DurationError(f"duration must not be negative: {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form of ``seconds`` (``"1h"``, ``"30m"``, ``"45s"``, ``"2d"``)."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def to_epoch(when: datetime) -> float:
    """Epoch seconds of an aware datetime (a naive one is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def from_epoch(seconds: float) -> datetime:
    """The aware UTC datetime of epoch ``seconds``."""
    return datetime.fromtimestamp(seconds, tz=UTC)


def hour_bucket(seconds: float) -> int:
    """The start (epoch seconds) of the UTC hour containing ``seconds``: the rollup key."""
    return int(seconds // 3600) * 3600
