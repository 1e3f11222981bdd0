"""Telling "the database is not there right now" from "the database rejects this data"."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# Errors that mean "the database is not there right now": keep the data and retry later.
_OUTAGE = (OperationalError, PoolTimeoutError, ConnectionError, TimeoutError)


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` says the database is unreachable, locked or timed out (retry later), as
    opposed to rejecting this particular data (retrying would fail for ever)."""
    if isinstance(exc, _OUTAGE):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
