"""A SQLite store opened for reading through the sqlite3 module alone, schema checked.

Why not SQLAlchemy: importing it costs a read command (``synthmon history``, ``uptime``) more than
everything else it does. The rules are those of
:meth:`monitor.store.database.Database.open_existing`: nothing is created (no file, no schema) and
the store must be at this synthmon's schema revision (:func:`monitor.store.migrate.check_revision`,
the same errors).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from monitor.store import migrate

#: How long a read waits for a writer holding the database lock (as the engine's connect timeout).
BUSY_TIMEOUT_S = 5.0


def open_sqlite_read(path: Path) -> sqlite3.Connection:
    """A connection to the existing store file at ``path`` once its schema revision is this code's.

    The connection is in autocommit mode: the caller begins its read transactions itself. Raises
    :class:`monitor.store.migrate.SchemaError` (missing, outdated, too new) or ``sqlite3.Error``.
    """
    if not path.exists():
        raise migrate.SchemaMissingError(f"no store at {path}; {migrate.HOW_TO_MIGRATE}")
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        migrate.check_revision(_stamped_revision(conn, path))
    except BaseException:
        conn.close()
        raise
    return conn


def _stamped_revision(conn: sqlite3.Connection, path: Path) -> str | None:
    """The revision in ``alembic_version`` (None: no schema yet), as
    :func:`monitor.store.migrate.current_revision` reads it."""
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    ).fetchone()
    if has_table is None:
        return None
    rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    if len(rows) == 1:
        return str(rows[0][0])
    # A branched history, which this code never writes: Alembic decides, as for every store.
    from monitor.store.engine import create_store_engine

    engine = create_store_engine(f"sqlite:///{path}", create_dirs=False)
    try:
        return migrate.current_revision(engine)
    finally:
        engine.dispose()
