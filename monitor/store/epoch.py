"""Timestamps as the store keeps them.

The store keeps times as float epoch seconds (UTC): the one representation that compares, indexes and
buckets the same way on SQLite and PostgreSQL. Everything above the store uses aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime


def to_epoch(when: datetime) -> float:
    """Epoch seconds of an aware datetime (a naive one is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def from_epoch(seconds: float) -> datetime:
    """The aware UTC datetime of epoch ``seconds``."""
    return datetime.fromtimestamp(seconds, tz=UTC)
