"""The retention job: each feature store prunes its own tables; this runs them on a schedule.

Why here and not in a feature: history (runs, steps, rollups) and alerting (finished outbox rows,
expired silences) each know what is old in their tables, but one job, one interval
(``store.prune_interval``) and one counter (``synthmon_store_pruned_rows_total{table}``) serve both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import structlog

from monitor.store.engine import RunInThread
from monitor.store.metrics import StoreMetrics
from monitor.store.migrate import StoreGate
from probes.base import Clock


class Prunable(Protocol):
    """A store with retention: ``prune(now)`` deletes what is past it, returning rows per table."""

    def prune(self, now: datetime) -> Mapping[str, int]: ...


class RetentionJob:
    """Runs every store's ``prune`` off the event loop; failures are counted and logged, never raised.

    Rollups need no job of their own: they are folded in the same transaction as each run.
    """

    def __init__(
        self,
        stores: Sequence[Prunable],
        clock: Clock,
        metrics: StoreMetrics,
        *,
        logger: Any = None,
        run: RunInThread | None = None,
        gate: StoreGate | None = None,
    ) -> None:
        self._stores = list(stores)
        self._run: RunInThread = run or asyncio.to_thread
        self._gate = gate
        self._clock = clock
        self._metrics = metrics
        self._log = logger if logger is not None else structlog.get_logger("synthmon.store")

    async def run(self) -> dict[str, int] | None:
        """Prune once; rows removed per table, or None when a store failed (or is not open yet)."""
        if self._gate is not None and not self._gate.ready:
            return None
        now = self._clock.now()
        removed: dict[str, int] = {}
        for store in self._stores:
            try:
                report: Mapping[str, int] = await self._run(store.prune, now)
            except Exception as exc:  # the store being down must not kill the scheduler's job
                self._metrics.errors.labels(operation="prune").inc()
                self._log.warning("retention_failed", store=type(store).__name__, error=type(exc).__name__)
                return None
            removed.update(report)
        for table, rows in removed.items():
            self._metrics.pruned.labels(table=table).inc(rows)
        self._log.info("retention_done", **removed)
        return removed

    def job(self, interval_s: float) -> tuple[str, float, Callable[[], Awaitable[Any]]]:
        """``(name, interval_s, coroutine function)`` for the scheduler. The name is the ``task``
        label of ``synthmon_job_errors_total``, kept from when only history was pruned."""
        return ("history-retention", interval_s, self.run)
