"""The history sink keeps probing alive through a database outage: buffer, metrics, flush on recovery."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.history import migrate
from monitor.history.metrics import StoreMetrics
from monitor.history.retention import RetentionJob
from monitor.history.sink import HistorySink
from monitor.history.sqlstore import SqlStore, create_store_engine
from probes.base import Status

from .history_helpers import T0, FakeClock, result


@pytest.fixture
def locked_store(tmp_path: Path) -> Iterator[tuple[SqlStore, sqlite3.Connection]]:
    """A SQLite store with a short busy timeout, and a second raw connection able to lock it."""
    path = tmp_path / "h.db"
    engine = create_store_engine(f"sqlite:///{path}", connect_timeout_s=0.1)
    migrate.upgrade(engine)
    store = SqlStore(engine)
    locker = sqlite3.connect(path, isolation_level=None)
    yield store, locker
    locker.close()
    store.close()


def _sample(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


async def test_outage_buffers_then_flushes_everything(
    locked_store: tuple[SqlStore, sqlite3.Connection],
) -> None:
    """While the database is locked results are buffered and counted; when it is back all are stored once."""
    store, locker = locked_store
    registry = CollectorRegistry()
    sink = HistorySink(store, StoreMetrics(registry), buffer_size=100)
    runs = [result("auth", Status.PASS, T0 + timedelta(minutes=i)) for i in range(4)]
    await sink.handle(runs[0])
    locker.execute("BEGIN EXCLUSIVE")  # a real writer holding the database: every write times out
    for r in runs[1:]:
        await sink.handle(r)
    assert sink.depth == 3
    assert _sample(registry, "synthmon_history_buffer_depth") == 3
    assert _sample(registry, "synthmon_store_errors_total", {"operation": "append_runs"}) == 3
    locker.execute("ROLLBACK")
    assert await sink.flush() is True
    assert sink.depth == 0
    assert _sample(registry, "synthmon_history_buffer_depth") == 0
    assert store.runs(probe="auth", since=T0, limit=10) == list(reversed(runs))


async def test_full_buffer_drops_oldest_and_counts(locked_store: tuple[SqlStore, sqlite3.Connection]) -> None:
    """A buffer at capacity drops its oldest results, counts them, and keeps the newest."""
    store, locker = locked_store
    registry = CollectorRegistry()
    sink = HistorySink(store, StoreMetrics(registry), buffer_size=2)
    runs = [result("auth", Status.PASS, T0 + timedelta(minutes=i)) for i in range(5)]
    locker.execute("BEGIN EXCLUSIVE")
    for r in runs:
        await sink.handle(r)
    assert _sample(registry, "synthmon_history_buffer_dropped_total") == 3
    locker.execute("ROLLBACK")
    await sink.flush()
    assert store.runs(probe=None, since=T0, limit=10) == [runs[4], runs[3]]


async def test_periodic_flush_job_writes_buffer_without_new_results(
    locked_store: tuple[SqlStore, sqlite3.Connection],
) -> None:
    """The scheduler's flush job empties the buffer once the database is back, even with no new runs."""
    store, locker = locked_store
    sink = HistorySink(store, StoreMetrics(CollectorRegistry()))
    locker.execute("BEGIN EXCLUSIVE")
    await sink.handle(result("auth", Status.FAIL, T0))
    locker.execute("ROLLBACK")
    name, interval, flush = sink.job()
    assert (name, interval) == ("history-flush", 10.0)
    await flush()
    assert len(store.runs(probe=None, since=T0, limit=10)) == 1


async def test_retention_job_prunes_and_survives_outage(
    locked_store: tuple[SqlStore, sqlite3.Connection],
) -> None:
    """The retention job removes expired runs; with the database locked it reports failure, not raises."""
    store, locker = locked_store
    registry = CollectorRegistry()
    metrics = StoreMetrics(registry)
    store.append_runs([result("auth", Status.PASS, T0)])
    clock = FakeClock(T0 + timedelta(days=31))
    job = RetentionJob(store, clock, metrics)
    locker.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    assert await job.run() is None
    assert time.monotonic() - started < 5
    assert _sample(registry, "synthmon_store_errors_total", {"operation": "prune"}) == 1
    locker.execute("ROLLBACK")
    report = await job.run()
    assert report is not None
    assert report.runs == 1
    assert _sample(registry, "synthmon_store_pruned_rows_total", {"table": "runs"}) == 1
