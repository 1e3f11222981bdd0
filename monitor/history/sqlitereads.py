"""The history reads (:class:`monitor.history.reads.HistoryReads`) on a SQLite store through the
sqlite3 module: the statements' SQL comes from :mod:`monitor.history.sqltext`, generated from
their SQLAlchemy form, so the read commands run what the daemon runs without importing SQLAlchemy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monitor.history.reads import HistoryReads, Read
from monitor.history.sqltext import SQLITE
from monitor.store.sqliteread import open_sqlite_read


class SqliteReads:
    """An open SQLite store and the :data:`monitor.history.reads.Fetch` over it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> SqliteReads:
        """Open the existing store at ``path`` (see :func:`monitor.store.sqliteread.open_sqlite_read`)."""
        return cls(open_sqlite_read(path))

    def fetch(self, reads: Sequence[Read]) -> list[list[Any]]:
        """The rows of each read, all in one read transaction (one snapshot of the store)."""
        self.conn.execute("BEGIN DEFERRED")
        try:
            out = []
            for name, params in reads:
                sql, fixed = SQLITE[name]
                out.append(self.conn.execute(sql, {**fixed, **params}).fetchall())
            return out
        finally:
            self.conn.execute("ROLLBACK")

    def history(self, *, retention_days: int) -> HistoryReads:
        """The history reads over this store."""
        return HistoryReads(self.fetch, retention_days=retention_days)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
