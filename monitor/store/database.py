"""One database handle shared by the feature stores: transactions, dialect helpers, schema check.

Only the locking differs between the backends:

- SQLite: writers take the database lock up front (``BEGIN IMMEDIATE``), so a read-modify-write such
  as an incident transition cannot interleave with another writer; readers run beside them (WAL).
- PostgreSQL: several replicas may share the store; the feature stores lock rows
  (``SELECT ... FOR UPDATE``, ``SKIP LOCKED``) where they need mutual exclusion.

Everything here is blocking; async callers cross to a store thread (:class:`StoreExecutor`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Table

from monitor.store import migrate
from monitor.store.engine import WRITE_OPTION, create_store_engine, sqlite_path


class Database:
    """An engine plus the transaction shapes every store method uses."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str) -> Database:
        """Connect to ``url``, apply pending migrations (refusing a newer schema) and return it."""
        return cls._on_schema(create_store_engine(url), migrate.upgrade)

    @classmethod
    def open_existing(cls, url: str) -> Database:
        """Open a database that must already be migrated to this code's schema, changing nothing.

        For the read-and-edit commands (history, uptime, silence): they must neither create a
        SQLite file nor migrate a database a running daemon of another version is using. Raises
        :class:`migrate.SchemaMissingError` (no such file / no schema yet),
        :class:`migrate.SchemaOutdatedError` or :class:`migrate.SchemaTooNewError`.
        """
        path = sqlite_path(url)
        if path is not None and not path.exists():
            raise migrate.SchemaMissingError(f"no store at {path}; {migrate.HOW_TO_MIGRATE}")
        return cls._on_schema(create_store_engine(url, create_dirs=False), migrate.check)

    @classmethod
    def _on_schema(cls, engine: Engine, schema_step: Callable[[Engine], object]) -> Database:
        """A database on ``engine`` once ``schema_step`` (migrate or check) accepted its schema.

        A refused schema (or any error, interrupts included) disposes the engine before
        re-raising, so no connection pool outlives a handle that was never returned.
        """
        try:
            schema_step(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: holding the write lock from its first statement)."""
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads (its own deferred transaction on SQLite)."""
        with self.engine.connect() as conn:
            yield conn

    def insert(self, table: Table) -> Any:
        """The dialect's INSERT for ``table`` (``on_conflict_*`` available on both backends)."""
        return dialect_insert(self.engine.dialect.name, table)


def dialect_insert(dialect: str, table: Table) -> Any:
    """The INSERT of ``dialect`` ("postgresql" or "sqlite") for ``table``, with ``on_conflict_*``.

    Only that dialect's module is imported, on first use: the PostgreSQL dialect is about 2.3 MB a
    daemon on SQLite would keep for nothing, and a third of a read-only SQLite command's start-up
    (``synthmon uptime``). The engine has already loaded its own dialect, so this costs a lookup.
    """
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
