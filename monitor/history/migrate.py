"""Apply the Alembic migrations at start-up, and refuse a database whose schema is newer than the code.

Exceptions::

    SchemaError
      └── SchemaTooNewError   the database was migrated by a newer synthmon: refuse to start
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class SchemaError(RuntimeError):
    """The store's schema cannot be brought to the version this code needs."""


class SchemaTooNewError(SchemaError):
    """The database carries a revision this code does not know (a newer synthmon migrated it)."""


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    # The package always ships at least one revision.
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database, or None for an empty database."""
    with engine.connect() as conn:
        rev: str | None = MigrationContext.configure(conn).get_current_revision()
        return rev


def upgrade(engine: Engine) -> str:
    """Bring the database to the head revision and return it; raise :class:`SchemaTooNewError` first
    when the database is ahead of this code (running old code on it could corrupt it)."""
    cfg = _config()
    script = ScriptDirectory.from_config(cfg)
    current = current_revision(engine)
    if current is not None:
        try:
            known = script.get_revision(current)
        except CommandError:
            known = None
        if known is None:
            raise SchemaTooNewError(
                f"the store's schema is at revision {current!r}, newer than this synthmon "
                f"(knows up to {script.get_current_head()!r}); upgrade synthmon or point it at another store"
            )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return head_revision()
