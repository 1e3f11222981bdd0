"""The history sink: results go to a write queue and from there, in batches, to the history store.

See :mod:`monitor.store.queue` for why a sink never awaits the database itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from monitor.history.base import HistoryStore
from monitor.history.metrics import HistoryMetrics
from monitor.results import ProbeResult
from monitor.store.engine import RunInThread
from monitor.store.metrics import StoreMetrics
from monitor.store.migrate import StoreGate
from monitor.store.outage import is_outage
from monitor.store.queue import WriteQueue


class HistorySink:
    """A :class:`monitor.results.ResultSink` that writes runs to a :class:`HistoryStore`.

    ``handle`` only queues (never blocks the probe job, never raises); results are written in
    batches, one transaction per batch, on the store's threads (``run``; default
    ``asyncio.to_thread``), after results have gathered for ``linger_s``. A batch the store
    rejects for its content (not an outage) is retried one by one so a single bad row is dropped
    (counted, logged) and the rest stored.
    """

    def __init__(
        self,
        store: HistoryStore,
        metrics: HistoryMetrics,
        store_metrics: StoreMetrics,
        *,
        buffer_size: int = 10_000,
        logger: Any = None,
        run: RunInThread | None = None,
        gate: StoreGate | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        linger_s: float = 0.0,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._store_metrics = store_metrics
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
            linger_s=linger_s,
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
            self._store_metrics.errors.labels(operation="append_runs").inc()
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
