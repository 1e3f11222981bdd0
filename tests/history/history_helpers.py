"""Builders and store fixtures shared by the history tests (results, stores on SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from monitor.alerting.sqlstore import SqlAlertingStore
from monitor.history.sqlstore import SqlHistoryStore
from monitor.results import ProbeResult
from monitor.store import migrate
from monitor.store.database import Database
from monitor.store.engine import create_store_engine
from probes.base import Diagnosis, Status, StepResult

T0 = datetime(2025, 7, 22, 10, 0, tzinfo=UTC)
PG_URL = os.environ.get("SYNTHMON_TEST_PG_URL")
PG_SKIP_REASON = "SYNTHMON_TEST_PG_URL is not set (.ci/run starts PostgreSQL and sets it)"


class FullStore:
    """Both feature stores on one database, as the daemon wires them, behind one handle.

    The store contract tests exercise history and alerting together (a run stored, an incident
    transition, the outbox) and close the database afterwards; this keeps each test about the
    behaviour instead of the wiring. Methods resolve on the history store first, then alerting.
    """

    def __init__(
        self, engine: sa.Engine, *, retention_days: int = 30, rollup_retention_days: int = 400
    ) -> None:
        self.engine = engine
        self.db = Database(engine)
        self.history = SqlHistoryStore(
            self.db, retention_days=retention_days, rollup_retention_days=rollup_retention_days
        )
        self.alerting = SqlAlertingStore(self.db, retention_days=retention_days)

    @classmethod
    def open(cls, url: str, **kwargs: int) -> FullStore:
        """Migrate the database at ``url`` (as the daemon does) and open both stores on it."""
        return cls(Database.open(url).engine, **kwargs)

    @classmethod
    def open_existing(cls, url: str, **kwargs: int) -> FullStore:
        """Open both stores on an already migrated database (as the read-only commands do)."""
        return cls(Database.open_existing(url).engine, **kwargs)

    def __getattr__(self, name: str) -> Any:
        for store in (self.history, self.alerting):
            if hasattr(store, name):
                return getattr(store, name)
        raise AttributeError(name)

    def prune(self, now: datetime) -> dict[str, int]:
        """Retention of both stores, as the retention job runs it."""
        return {**self.history.prune(now), **self.alerting.prune(now)}

    def close(self) -> None:
        """Release the connection pool."""
        self.db.close()


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.t = start
        self.mono = 0.0

    def now(self) -> datetime:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
        self.mono += seconds


def result(
    probe: str = "artifact_roundtrip",
    status: Status = Status.PASS,
    at: datetime = T0,
    *,
    step: str = "upload",
    http_status: int | None = None,
    run_id: str | None = None,
    duration: float = 0.5,
    diagnosis: Diagnosis | None = None,
    environment: str = "prod",
) -> ProbeResult:
    """A run of ``probe`` whose step ``step`` has ``status`` (preceded by a passing ``setup`` step)."""
    failing = status in (Status.FAIL, Status.ERROR)
    steps = (
        StepResult(name="setup", status=Status.PASS, duration_s=0.1, http_status=200),
        StepResult(
            name=step,
            status=status,
            duration_s=duration - 0.1,
            http_status=http_status if http_status is not None else (404 if failing else 200),
            error_class="http_status" if failing else None,
            message="404 Not Found for url .../mlflow-artifacts/artifacts/x" if failing else "",
            path="/api/mlflow/api/2.0/mlflow-artifacts/artifacts/x",
            diagnosis=diagnosis,
        ),
    )
    return ProbeResult(
        probe=probe,
        kind=probe,
        run_id=run_id or uuid.uuid4().hex,
        started_at=at,
        duration_s=duration,
        status=status,
        steps=steps,
        environment=environment,
    )


@contextmanager
def pg_schema_url(base_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, as a URL whose search_path points at it; dropped after."""
    schema = "h4_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@contextmanager
def open_store(backend: str, tmp_path: object, **kwargs: int) -> Iterator[FullStore]:
    """A migrated store on ``backend`` ("sqlite" or "postgres") that is closed afterwards."""
    if backend == "sqlite":
        store = FullStore.open(f"sqlite:///{tmp_path}/synthmon.db", **kwargs)
        try:
            yield store
        finally:
            store.close()
        return
    assert PG_URL is not None
    with pg_schema_url(PG_URL) as url:
        store = FullStore.open(url, **kwargs)
        try:
            yield store
        finally:
            store.close()


@contextmanager
def locked_sqlite_store(path: Path) -> Iterator[tuple[FullStore, sqlite3.Connection]]:
    """A migrated SQLite store at ``path`` with a short busy timeout, and a second raw connection
    able to lock it (``BEGIN IMMEDIATE`` on it makes the store's writes fail fast)."""
    engine = create_store_engine(f"sqlite:///{path}", connect_timeout_s=0.1)
    migrate.upgrade(engine)
    store = FullStore(engine)
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        yield store, locker
    finally:
        locker.close()
        store.close()
