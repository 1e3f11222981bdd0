"""The retention job: prunes raw runs, old rollups, finished outbox rows and expired silences."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from monitor.history.base import HistoryStore, PruneReport
from monitor.history.metrics import StoreMetrics
from monitor.history.migrate import StoreGate
from monitor.history.sink import RunInThread
from probes.base import Clock


class RetentionJob:
    """Runs :meth:`HistoryStore.prune` off the event loop; failures are counted and logged, never raised.

    Rollups need no job of their own: they are folded in the same transaction as each run.
    """

    def __init__(
        self,
        store: HistoryStore,
        clock: Clock,
        metrics: StoreMetrics,
        *,
        logger: Any = None,
        run: RunInThread | None = None,
        gate: StoreGate | None = None,
    ) -> None:
        self._store = store
        self._run: RunInThread = run or asyncio.to_thread
        self._gate = gate
        self._clock = clock
        self._metrics = metrics
        self._log = logger if logger is not None else structlog.get_logger("synthmon.history")

    async def run(self) -> PruneReport | None:
        """Prune once; the report, or None when the store failed (or is not open yet)."""
        if self._gate is not None and not self._gate.ready:
            return None
        try:
            report: PruneReport = await self._run(self._store.prune, self._clock.now())
        except Exception as exc:  # the store being down must not kill the scheduler's job
            self._metrics.errors.labels(operation="prune").inc()
            self._log.warning("retention_failed", error=type(exc).__name__)
            return None
        for table in ("runs", "rollups", "outbox", "silences"):
            self._metrics.pruned.labels(table=table).inc(getattr(report, table))
        self._log.info(
            "retention_done", **{k: getattr(report, k) for k in ("runs", "rollups", "outbox", "silences")}
        )
        return report

    def job(self, interval_s: float) -> tuple[str, float, Callable[[], Awaitable[Any]]]:
        """``(name, interval_s, coroutine function)`` for the scheduler."""
        return ("history-retention", interval_s, self.run)
