"""The history sink, and the write queue that keeps every store writer off the probe path.

Why a queue: ``Daemon.publish`` awaits each sink inside the probe job. A sink that awaited the
database (locked, hung, half-open connection) would hold every probe job with it, and probing, the
whole point of the daemon, would stop. So a sink only appends to a bounded in-memory
:class:`WriteQueue` and returns; one background task per queue drains it in order through the
store's own threads. While the database is down the queue grows (oldest dropped, and counted, when
full) and draining backs off; when it is back, everything is written in the order it arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from monitor.history.base import HistoryStore
from monitor.history.metrics import StoreMetrics
from monitor.history.migrate import StoreGate
from monitor.results import ProbeResult

T = TypeVar("T")

# Errors that mean "the database is not there right now": keep the results and retry later.
_OUTAGE = (OperationalError, PoolTimeoutError, ConnectionError, TimeoutError)

#: ``run(fn, *args) -> awaitable of fn(*args)`` on a store thread (``StoreExecutor.run``).
RunInThread = Callable[..., Awaitable[Any]]


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` says the database is unreachable, locked or timed out (retry later), as
    opposed to rejecting this particular data (retrying would fail for ever)."""
    if isinstance(exc, _OUTAGE):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class ResilienceMetrics:
    """Series of the store's availability and of the incident queue (the history queue's are in
    :class:`StoreMetrics`): ``synthmon_store_ready``, ``synthmon_incident_buffer_depth``,
    ``synthmon_incident_buffer_dropped_total``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.store_ready = Gauge(
            "synthmon_store_ready",
            "1 when the store is reachable and migrated; 0 while synthmon keeps retrying to open it.",
            registry=registry,
        )
        self.incident_buffer_depth = Gauge(
            "synthmon_incident_buffer_depth",
            "Results waiting for incident evaluation because the store could not take them yet.",
            registry=registry,
        )
        self.incident_buffer_dropped = Counter(
            "synthmon_incident_buffer_dropped_total",
            "Results never evaluated for incidents: the in-memory buffer was full, or evaluation failed.",
            registry=registry,
        )


class WriteQueue(Generic[T]):
    """A bounded FIFO drained in order by one background task (see the module docstring).

    ``process(batch)`` writes a batch and returns how many items from its front are done (stored,
    or given up on as bad data); fewer than the whole batch means "the store is unavailable": the
    rest goes back to the front and draining backs off (``backoff_base`` doubling up to
    ``backoff_max`` seconds, on ``monotonic``). ``gate`` (optional) must be open before any write.
    ``put`` never blocks and never raises; it needs a running event loop to start the drain task.
    """

    def __init__(
        self,
        name: str,
        process: Callable[[list[T]], Awaitable[int]],
        *,
        capacity: int,
        batch: int = 500,
        monotonic: Callable[[], float] = time.monotonic,
        gate: StoreGate | None = None,
        on_depth: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        logger: Any = None,
    ) -> None:
        self.name = name
        self._process = process
        self._capacity = capacity
        self._batch = batch
        self._monotonic = monotonic
        self._gate = gate
        self._on_depth = on_depth
        self._on_dropped = on_dropped
        self._base = backoff_base
        self._max = backoff_max
        self._log = logger if logger is not None else structlog.get_logger("synthmon.history")
        self._items: deque[T] = deque()
        self._inflight = 0
        self._failures = 0
        self._retry_at = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Items not yet written, including a batch being written right now."""
        return len(self._items) + self._inflight

    def put(self, item: T) -> None:
        """Queue ``item`` (dropping the oldest when full) and start draining unless backing off."""
        self._items.append(item)
        self._trim()
        self._report_depth()
        self.kick()

    def _trim(self) -> None:
        overflow = len(self._items) + self._inflight - self._capacity
        dropped = 0
        while overflow > dropped and self._items:
            self._items.popleft()  # the oldest item is the least useful one to keep
            dropped += 1
        if dropped:
            if self._on_dropped is not None:
                self._on_dropped(dropped)
            self._log.warning(f"{self.name}_buffer_overflow", dropped=dropped, capacity=self._capacity)

    def _report_depth(self) -> None:
        if self._on_depth is not None:
            self._on_depth(self.depth)

    def kick(self, *, force: bool = False) -> asyncio.Task[None] | None:
        """Start the drain task if there is work and no task yet; ``force`` ignores the backoff.
        Returns the drain task (running or new), or None when there is nothing to do now."""
        if self._task is not None and not self._task.done():
            return self._task
        if not self._items:
            return None
        if not force and self._monotonic() < self._retry_at:
            return None
        self._task = asyncio.get_running_loop().create_task(self._drain(force=force))
        return self._task

    async def _drain(self, *, force: bool) -> None:
        while self._items:
            if self._gate is not None and not await self._gate.ensure(force=force):
                return  # the gate backs off by itself; the next kick asks again
            batch = [self._items.popleft() for _ in range(min(self._batch, len(self._items)))]
            self._inflight = len(batch)
            try:
                done = await self._process(batch)
            except Exception:  # a bug in process must not lose the batch or kill the queue silently
                self._log.exception(f"{self.name}_write_crashed", size=len(batch))
                done = 0
            finally:
                self._inflight = 0
            if done < len(batch):
                self._items.extendleft(reversed(batch[done:]))
                self._trim()
                self._failures += 1
                delay = min(self._max, self._base * 2 ** min(self._failures - 1, 30))
                self._retry_at = self._monotonic() + delay
                self._report_depth()
                return
            self._failures = 0
            self._retry_at = 0.0
            self._report_depth()

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Drain now (ignoring the backoff) and wait up to ``timeout_s`` (None: no limit).

        True when the queue is empty afterwards. On timeout the drain task keeps running (a
        store call cannot be interrupted from here) and False is returned.
        """
        task = self.kick(force=True)
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
            if not done:
                return False
        return not self.depth

    def job(self, name: str, interval_s: float) -> tuple[str, float, Callable[[], Awaitable[Any]]]:
        """A periodic kick for the scheduler: retries after an outage even when no new item comes."""

        async def _kick() -> None:
            self.kick()

        return (name, interval_s, _kick)


class HistorySink:
    """A :class:`monitor.results.ResultSink` that writes runs to a :class:`HistoryStore`.

    ``handle`` only queues (never blocks the probe job, never raises); results are written in
    batches, one transaction per batch, on the store's threads (``run``; default
    ``asyncio.to_thread``). A batch the store rejects for its content (not an outage) is retried
    one by one so a single bad row is dropped (counted, logged) and the rest stored.
    """

    def __init__(
        self,
        store: HistoryStore,
        metrics: StoreMetrics,
        *,
        buffer_size: int = 10_000,
        logger: Any = None,
        run: RunInThread | None = None,
        gate: StoreGate | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._run: RunInThread = run or asyncio.to_thread
        self._log = logger if logger is not None else structlog.get_logger("synthmon.history")
        self._queue: WriteQueue[ProbeResult] = WriteQueue(
            "history",
            self._write,
            capacity=buffer_size,
            monotonic=monotonic,
            gate=gate,
            on_depth=metrics.buffer_depth.set,
            on_dropped=metrics.buffer_dropped.inc,
            logger=self._log,
        )

    @property
    def depth(self) -> int:
        """Results waiting to be written."""
        return self._queue.depth

    async def handle(self, result: ProbeResult) -> None:
        """Queue ``result`` for writing. Returns at once; never raises."""
        self._queue.put(result)

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Write everything queued now; True when nothing is left. Bounded by ``timeout_s``."""
        return await self._queue.flush(timeout_s)

    async def _write(self, batch: list[ProbeResult]) -> int:
        try:
            await self._run(self._store.append_runs, batch)
            return len(batch)
        except Exception as exc:
            self._metrics.errors.labels(operation="append_runs").inc()
            if is_outage(exc):
                self._log.warning(
                    "history_store_unavailable", error=type(exc).__name__, buffered=self._queue.depth
                )
                return 0
            self._log.error("history_batch_rejected", error=type(exc).__name__, size=len(batch))
        for i, result in enumerate(batch):
            try:
                await self._run(self._store.append_runs, [result])
            except Exception as bad:
                if is_outage(bad):
                    return i
                self._metrics.buffer_dropped.inc()
                self._log.error(
                    "history_result_dropped",
                    probe=result.probe,
                    run_id=result.run_id,
                    error=type(bad).__name__,
                )
        return len(batch)

    def job(self, interval_s: float = 10.0) -> tuple[str, float, Callable[[], Awaitable[Any]]]:
        """The periodic retry (writes the buffer after an outage even when no new results arrive)."""
        return self._queue.job("history-flush", interval_s)
