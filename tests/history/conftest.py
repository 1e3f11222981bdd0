"""Fixtures of the store contract suite: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.history.history_helpers import FullStore

from .history_helpers import PG_SKIP_REASON, PG_URL, open_store

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[pytest.mark.postgres, pytest.mark.skipif(PG_URL is None, reason=PG_SKIP_REASON)],
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name of this run of a contract test."""
    return str(request.param)


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[FullStore]:
    """A fresh, migrated store on the current backend."""
    with open_store(backend, tmp_path) as s:
        yield s
