"""The history sink: appends every result to the store, never raising, buffering through outages."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from monitor.history.base import HistoryStore
from monitor.history.metrics import StoreMetrics
from monitor.results import ProbeResult

# Errors that mean "the database is not there right now": keep the results and retry later.
_OUTAGE = (OperationalError, PoolTimeoutError, ConnectionError, TimeoutError)


class HistorySink:
    """A :class:`monitor.results.ResultSink` that writes runs to a :class:`HistoryStore`.

    Results first go to a bounded in-memory buffer (oldest dropped, and counted, when it is full); the
    buffer is written in one transaction per flush, off the event loop. While the database is down the
    buffer grows and each ``handle``/``flush`` retries; nothing is lost until the buffer overflows.
    """

    def __init__(
        self, store: HistoryStore, metrics: StoreMetrics, *, buffer_size: int = 10_000, logger: Any = None
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._capacity = buffer_size
        self._buffer: deque[ProbeResult] = deque()
        self._lock = asyncio.Lock()
        self._log = logger if logger is not None else structlog.get_logger("synthmon.history")

    @property
    def depth(self) -> int:
        """Results waiting to be written."""
        return len(self._buffer)

    def _push(self, results: list[ProbeResult], *, front: bool = False) -> None:
        if front:
            self._buffer.extendleft(reversed(results))
        else:
            self._buffer.extend(results)
        overflow = len(self._buffer) - self._capacity
        for _ in range(max(0, overflow)):
            self._buffer.popleft()  # the oldest result is the least useful one to keep
        if overflow > 0:
            self._metrics.buffer_dropped.inc(overflow)
            self._log.warning("history_buffer_overflow", dropped=overflow, capacity=self._capacity)
        self._metrics.buffer_depth.set(len(self._buffer))

    async def handle(self, result: ProbeResult) -> None:
        """Buffer ``result`` and try to write everything buffered. Never raises."""
        self._push([result])
        await self.flush()

    async def flush(self) -> bool:
        """Write the buffer; True when it is empty afterwards. Also the periodic retry job."""
        async with self._lock:
            if not self._buffer:
                return True
            batch = list(self._buffer)
            self._buffer.clear()
            try:
                await asyncio.to_thread(self._store.append_runs, batch)
            except _OUTAGE as exc:
                self._requeue(batch, exc)
                return False
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    self._requeue(batch, exc)
                    return False
                await self._one_by_one(batch, exc)
            except Exception as exc:  # a bad row must not block the buffer forever
                await self._one_by_one(batch, exc)
            self._metrics.buffer_depth.set(len(self._buffer))
            return not self._buffer

    def _requeue(self, batch: list[ProbeResult], exc: BaseException) -> None:
        self._metrics.errors.labels(operation="append_runs").inc()
        self._push(batch, front=True)
        self._log.warning("history_store_unavailable", error=type(exc).__name__, buffered=len(self._buffer))

    async def _one_by_one(self, batch: list[ProbeResult], exc: BaseException) -> None:
        """Isolate results the store rejects (not an outage): store the rest, drop and log the bad."""
        self._metrics.errors.labels(operation="append_runs").inc()
        self._log.error("history_batch_rejected", error=type(exc).__name__, size=len(batch))
        for i, result in enumerate(batch):
            try:
                await asyncio.to_thread(self._store.append_runs, [result])
            except _OUTAGE as again:
                self._requeue(batch[i:], again)
                return
            except Exception as bad:
                self._metrics.buffer_dropped.inc()
                self._log.error(
                    "history_result_dropped",
                    probe=result.probe,
                    run_id=result.run_id,
                    error=type(bad).__name__,
                )

    def job(self, interval_s: float = 10.0) -> tuple[str, float, Any]:
        """The periodic flush (retries the buffer when no new results arrive), for the scheduler."""

        async def _flush() -> None:
            await self.flush()

        return ("history-flush", interval_s, _flush)
