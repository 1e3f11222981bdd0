"""The latency-baseline transformer: between the runner and the sinks, it judges each run against
its probe's and steps' baselines (:mod:`monitor.baselines.judge`) and hands on the judged result.

Baselines are recomputed from the history's hourly rollups every ``refresh`` (one range read of
summed bucket columns per probe and step, on the store's threads), never per run; the first run
after start-up starts the first refresh in the background, so no run waits for the database.
The slow-runs-in-a-row counts live in memory: after a restart a regression is simply counted again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from monitor.baselines.config import BaselinesConfig
from monitor.baselines.judge import Baseline, Finding, Key, baselines_from, judge
from monitor.baselines.metrics import BaselineMetrics
from monitor.baselines.view import StepLatency
from monitor.history.base import LatencyHistogram
from monitor.results import ProbeResult
from monitor.store.engine import RunInThread
from probes.base import Clock

#: After a failed refresh (store down), the next attempt comes after at most this long.
RETRY_S = 60.0


class HistogramSource(Protocol):
    """What the baselines read: the history store's summed latency buckets per probe and step."""

    def latency_histograms(self, *, since: datetime) -> list[LatencyHistogram]: ...


class LatencyBaselines:
    """A result transformer: ``await transform(result)`` returns the result as judged (unchanged
    while there is no baseline, or when disabled). Never raises for the store's failures."""

    def __init__(
        self,
        source: HistogramSource,
        config: BaselinesConfig,
        clock: Clock,
        metrics: BaselineMetrics,
        *,
        run: RunInThread | None = None,
        ready: Callable[[], bool] = lambda: True,
        logger: Any = None,
    ) -> None:
        self._source = source
        self._config = config
        self._clock = clock
        self._metrics = metrics
        self._run: RunInThread = run or asyncio.to_thread
        self._ready = ready
        self._log = logger if logger is not None else structlog.get_logger("synthmon.baselines")
        self._baselines: dict[Key, Baseline] = {}
        self._streaks: dict[Key, int] = {}
        self._last: dict[Key, Finding] = {}
        self._due = float("-inf")  # monotonic time of the next refresh
        self._refreshing: asyncio.Task[bool] | None = None
        # One refresh at a time: a slow one finishing late must not replace a newer one's baselines.
        self._refresh_lock = asyncio.Lock()

    @property
    def baselines(self) -> dict[Key, Baseline]:
        """The baselines in force."""
        return dict(self._baselines)

    async def transform(self, result: ProbeResult) -> ProbeResult:
        """Judge ``result`` against the baselines in force (starting a refresh when one is due)."""
        if not self._config.enabled:
            return result
        self._refresh_if_due()
        judged = judge(result, self._baselines, self._streaks, self._config)
        self._streaks = judged.streaks
        for f in judged.findings:
            self._last[(f.probe, f.step)] = f
        self._metrics.regressed(((f.probe, f.step), f.regressed) for f in judged.findings)
        for f in judged.regressed:
            if f.streak == self._config.consecutive:
                self._log.warning("latency.regression", probe=f.probe, step=f.step, message=f.message)
        return judged.result

    def _refresh_if_due(self) -> None:
        if self._clock.monotonic() < self._due or (
            self._refreshing is not None and not self._refreshing.done()
        ):
            return
        self._refreshing = asyncio.get_running_loop().create_task(self.refresh())

    async def refresh(self) -> bool:
        """Recompute the baselines from the rollups now; False (old baselines kept) when the store
        is not open or the read fails, retried after at most :data:`RETRY_S`."""
        async with self._refresh_lock:
            return await self._refresh()

    async def _refresh(self) -> bool:
        started = self._clock.monotonic()
        self._due = started + min(self._config.refresh, RETRY_S)
        if not self._ready():
            return False
        now = self._clock.now()
        try:
            rows = await self._run(
                self._source.latency_histograms, since=now - timedelta(seconds=self._config.window)
            )
        except Exception as exc:
            self._log.warning("latency.baselines_unavailable", error=type(exc).__name__)
            return False
        t0 = time.perf_counter()
        self._baselines = baselines_from(rows, self._config, now)
        self._due = started + self._config.refresh
        self._last = {k: f for k, f in self._last.items() if k in self._baselines}
        self._streaks = {k: n for k, n in self._streaks.items() if k in self._baselines}
        self._metrics.baselines(self._baselines)
        self._log.info(
            "latency.baselines_refreshed",
            baselines=len(self._baselines),
            histograms=len(rows),
            took_ms=round((time.perf_counter() - t0) * 1000, 1),
        )
        return True

    def reconfigure(self, config: BaselinesConfig) -> None:
        """Apply a reloaded ``baselines:`` section: baselines are recomputed on the next run; turned
        off, every baseline, count and series goes."""
        changed = config != self._config
        self._config = config
        if not config.enabled:
            self._baselines, self._streaks, self._last = {}, {}, {}
            self._metrics.baselines({})
        if changed:
            self._due = float("-inf")

    def view(self) -> dict[str, list[StepLatency]]:
        """Per probe, its run's and its steps' baselines and how the latest run compared."""
        out: dict[str, list[StepLatency]] = {}
        for key in sorted(self._baselines):
            base = self._baselines[key]
            last = self._last.get(key)
            out.setdefault(key[0], []).append(
                StepLatency(
                    step=key[1],
                    baseline_s=base.seconds,
                    baseline=base.name,
                    runs=base.runs,
                    last_s=last.duration_s if last is not None else None,
                    streak=last.streak if last is not None else 0,
                    regressed=last.regressed if last is not None else False,
                    message=last.message if last is not None else "",
                )
            )
        return out
