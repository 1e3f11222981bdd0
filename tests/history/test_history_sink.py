"""The history sink keeps probing alive through a database outage: it only queues; a background
writer stores, buffering (bounded) and backing off while the database is locked or down."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from monitor.history.metrics import HistoryMetrics
from monitor.history.sink import HistorySink
from monitor.logs import make_logger
from monitor.store.metrics import StoreMetrics
from monitor.store.queue import WriteQueue
from monitor.store.retention import RetentionJob
from probes.base import Status
from probes.support.masking import SecretMasker
from tests.history.history_helpers import FullStore

from .history_helpers import T0, FakeClock, locked_sqlite_store, result


@pytest.fixture
def locked_store(tmp_path: Path) -> Iterator[tuple[FullStore, sqlite3.Connection]]:
    """A SQLite store with a short busy timeout, and a second raw connection able to lock it."""
    with locked_sqlite_store(tmp_path / "h.db") as pair:
        yield pair


def _sample(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


async def test_outage_buffers_then_flushes_everything(
    locked_store: tuple[FullStore, sqlite3.Connection],
) -> None:
    """While the database is locked results are buffered and counted; when it is back all are stored once."""
    store, locker = locked_store
    registry = CollectorRegistry()
    sink = HistorySink(store, HistoryMetrics(registry), StoreMetrics(registry), buffer_size=100)
    runs = [result("auth", Status.PASS, T0 + timedelta(minutes=i)) for i in range(4)]
    await sink.handle(runs[0])
    assert await sink.flush(10) is True
    locker.execute("BEGIN EXCLUSIVE")  # a real writer holding the database: every write times out
    for r in runs[1:]:
        await sink.handle(r)
    assert await sink.flush(10) is False
    assert sink.depth == 3
    assert _sample(registry, "synthmon_history_buffer_depth") == 3
    assert _sample(registry, "synthmon_store_errors_total", {"operation": "append_runs"}) >= 1
    locker.execute("ROLLBACK")
    assert await sink.flush(10) is True
    assert sink.depth == 0
    assert _sample(registry, "synthmon_history_buffer_depth") == 0
    assert store.runs(probe="auth", since=T0, limit=10) == list(reversed(runs))


async def test_full_buffer_drops_oldest_and_counts(
    locked_store: tuple[FullStore, sqlite3.Connection],
) -> None:
    """A buffer at capacity drops its oldest results, counts them, and keeps the newest."""
    store, locker = locked_store
    registry = CollectorRegistry()
    sink = HistorySink(store, HistoryMetrics(registry), StoreMetrics(registry), buffer_size=2)
    runs = [result("auth", Status.PASS, T0 + timedelta(minutes=i)) for i in range(5)]
    locker.execute("BEGIN EXCLUSIVE")
    for r in runs:
        await sink.handle(r)
    assert await sink.flush(10) is False
    assert _sample(registry, "synthmon_history_buffer_dropped_total") == 3
    locker.execute("ROLLBACK")
    assert await sink.flush(10) is True
    assert store.runs(probe=None, since=T0, limit=10) == [runs[4], runs[3]]


async def test_periodic_job_retries_after_backoff_without_new_results(
    locked_store: tuple[FullStore, sqlite3.Connection],
) -> None:
    """After a failed write the flush job waits out the backoff, then writes the buffer with no new runs."""
    store, locker = locked_store
    clock = FakeClock(T0)
    sink = HistorySink(
        store,
        HistoryMetrics(CollectorRegistry()),
        StoreMetrics(CollectorRegistry()),
        monotonic=clock.monotonic,
    )
    locker.execute("BEGIN EXCLUSIVE")
    await sink.handle(result("auth", Status.FAIL, T0))
    assert await sink.flush(10) is False
    locker.execute("ROLLBACK")
    name, interval, kick = sink.job()
    assert (name, interval) == ("history-flush", 10.0)
    await kick()  # still inside the 1 s backoff: no attempt
    await asyncio.sleep(0.05)
    assert sink.depth == 1
    clock.advance(1.0)
    await kick()
    await _until(lambda: sink.depth == 0)
    assert len(store.runs(probe=None, since=T0, limit=10)) == 1


async def test_handle_never_waits_for_a_locked_database(tmp_path: Path) -> None:
    """With the database held by another writer (5 s busy timeout), handle returns at once every time."""
    path = tmp_path / "slow.db"
    store = FullStore.open(f"sqlite:///{path}")  # the production busy timeout: 5 s per write attempt
    locker = sqlite3.connect(path, isolation_level=None)
    sink = HistorySink(store, HistoryMetrics(CollectorRegistry()), StoreMetrics(CollectorRegistry()))
    try:
        locker.execute("BEGIN EXCLUSIVE")
        for i in range(5):
            started = time.monotonic()
            await sink.handle(result("auth", Status.PASS, T0 + timedelta(minutes=i)))
            # A handle that waited on the lock would take the 5 s busy timeout: 1 s separates the
            # two behaviours on a loaded machine (not a speed claim).
            assert time.monotonic() - started < 1.0
        assert sink.depth == 5
        locker.execute("ROLLBACK")
        assert await sink.flush(30) is True
        assert len(store.runs(probe=None, since=T0, limit=10)) == 5
    finally:
        locker.close()
        store.close()


async def test_shutdown_flush_is_bounded_while_locked(tmp_path: Path) -> None:
    """flush(timeout) returns False by its deadline while the write is still blocked on the lock."""
    path = tmp_path / "held.db"
    store = FullStore.open(f"sqlite:///{path}")
    locker = sqlite3.connect(path, isolation_level=None)
    sink = HistorySink(store, HistoryMetrics(CollectorRegistry()), StoreMetrics(CollectorRegistry()))
    try:
        locker.execute("BEGIN EXCLUSIVE")
        await sink.handle(result("auth", Status.PASS, T0))
        started = time.monotonic()
        assert await sink.flush(0.5) is False
        assert time.monotonic() - started < 1.5
        locker.execute("ROLLBACK")
        assert await sink.flush(30) is True
    finally:
        locker.close()
        store.close()


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.02)


async def test_retention_job_prunes_and_survives_outage(
    locked_store: tuple[FullStore, sqlite3.Connection],
) -> None:
    """The retention job removes expired runs; with the database locked it reports failure, not raises."""
    store, locker = locked_store
    registry = CollectorRegistry()
    metrics = StoreMetrics(registry)
    store.append_runs([result("auth", Status.PASS, T0)])
    clock = FakeClock(T0 + timedelta(days=31))
    job = RetentionJob([store], clock, metrics)
    locker.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    assert await job.run() is None
    assert time.monotonic() - started < 5
    assert _sample(registry, "synthmon_store_errors_total", {"operation": "prune"}) == 1
    locker.execute("ROLLBACK")
    report = await job.run()
    assert report is not None
    assert report["runs"] == 1
    assert _sample(registry, "synthmon_store_pruned_rows_total", {"table": "runs"}) == 1


async def test_lingering_queue_writes_many_results_in_one_transaction(tmp_path: Path) -> None:
    """With a linger, results arriving close together are stored by one append_runs call."""
    store = FullStore.open(f"sqlite:///{tmp_path}/l.db")
    calls: list[int] = []
    real = store.history.append_runs

    def counting(results: list[Any]) -> int:
        calls.append(len(results))
        return real(results)

    store.history.append_runs = counting  # type: ignore[method-assign]
    registry = CollectorRegistry()
    sink = HistorySink(store.history, HistoryMetrics(registry), StoreMetrics(registry), linger_s=30.0)
    try:
        for _ in range(25):
            await sink.handle(result("auth", Status.PASS, T0))
        assert calls == []  # still gathering (the linger is far off)
        assert sink.depth == 25
        assert await sink.flush(10)  # shutdown and the periodic job do not wait for the linger
        assert calls == [25]
    finally:
        store.close()


async def test_lingering_queue_writes_by_itself_when_the_linger_ends(tmp_path: Path) -> None:
    """Without a flush, the gathered results are written once the linger has passed."""
    store = FullStore.open(f"sqlite:///{tmp_path}/m.db")
    registry = CollectorRegistry()
    sink = HistorySink(store.history, HistoryMetrics(registry), StoreMetrics(registry), linger_s=0.05)
    try:
        for _ in range(3):
            await sink.handle(result("auth", Status.PASS, T0))
        deadline = time.monotonic() + 10
        while sink.depth:
            assert time.monotonic() < deadline, "the lingering queue never drained"
            await asyncio.sleep(0.02)
        assert len(store.runs(probe="auth", since=T0, limit=10)) == 3
    finally:
        store.close()


async def test_overflow_is_logged_once_a_minute_with_every_drop() -> None:
    """A full buffer drops on every new result while the store is down: each drop is counted, and
    the log says so at most once a minute, each line with the drops since the previous one."""
    now = [0.0]
    out = io.StringIO()
    dropped: list[int] = []

    async def store_down(batch: list[int]) -> int:
        return 0

    queue = WriteQueue(
        "history",
        store_down,
        capacity=2,
        monotonic=lambda: now[0],
        on_dropped=dropped.append,
        logger=make_logger(SecretMasker([]), stream=out, json=True),
    )
    for i in range(10):
        queue.put(i)
        await asyncio.sleep(0)  # let a drain attempt fail and back off
    now[0] += 61
    queue.put(10)
    await queue.flush(5)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    overflow = [line["dropped"] for line in lines if line["event"] == "history_buffer_overflow"]
    assert sum(dropped) == 9
    assert overflow == [1, 8]
