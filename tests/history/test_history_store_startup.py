"""Opening a store whose schema is already current needs no Alembic: the head revision read from the
migration files agrees with Alembic's, and a process that opens such a store never imports it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from monitor.store import migrate
from monitor.store.database import Database
from monitor.store.engine import create_store_engine

REPO = Path(__file__).resolve().parents[2]

#: Opens the store at argv[1] as the daemon does (migrate when needed), then says whether Alembic was
#: loaded for it.
_OPEN = """
import sys
from monitor.store.database import Database
Database.open(sys.argv[1]).close()
print("alembic" in sys.modules)
"""


def test_head_read_from_the_files_is_alembics_head() -> None:
    """The revision chain parsed from the migration files ends where Alembic's does."""
    assert migrate._linear_head() == ScriptDirectory.from_config(migrate._config()).get_current_head()


def _opened_with_alembic(url: str) -> bool:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", _OPEN, url], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.strip() == "True"


def test_a_current_store_opens_without_loading_alembic(tmp_path: Path) -> None:
    """The first open migrates (Alembic loaded); every later open of the same store does not load it."""
    url = f"sqlite:///{tmp_path}/synthmon.db"
    assert _opened_with_alembic(url)
    assert not _opened_with_alembic(url)
    db = Database.open_existing(url)
    try:
        assert migrate.check(db.engine) == migrate.head_revision()
    finally:
        db.close()


def test_an_empty_database_has_no_revision_and_is_missing(tmp_path: Path) -> None:
    """A database without synthmon's tables reads as no revision, and a read-only open says so."""
    engine = create_store_engine(f"sqlite:///{tmp_path}/empty.db")
    try:
        assert migrate.current_revision(engine) is None
        with pytest.raises(migrate.SchemaMissingError):
            migrate.check(engine)
    finally:
        engine.dispose()
