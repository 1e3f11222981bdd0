"""The SLOs in the running daemon: a periodic evaluation that sets the SLO series and feeds burn-rate
incidents to the alerting path, and ``GET /api/v1/slo``.

Burn-rate incidents: each evaluation hands every SLO's burn (:func:`monitor.slo.evaluate.burn_result`)
to ``feed``, which app.py points at the incident sink. The pseudo-probe ``slo:<name>`` goes through
the same state machine, outbox and Slack threads as a probe; declared as depending on its probe,
it joins that probe's open incident instead of paging a second time for one outage.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from monitor.history.base import HistoryStore
from monitor.results import ProbeResult
from monitor.slo.config import SloConfig, window_text
from monitor.slo.evaluate import SloStatus, burn_result, read_statuses
from monitor.slo.page import render_section
from monitor.store.engine import RunInThread
from monitor.store.migrate import StoreGate
from probes.base import Clock

#: How often the daemon evaluates the SLOs (the burn-rate alerts' resolution).
EVALUATE_EVERY_S = 60.0


class SloMetrics:
    """The SLO series: objective, attainment, budget left and burn rate per window length.

    A series without data (no counted run in the window) is absent, never 100 %.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.objective = Gauge(
            "synthmon_slo_objective_ratio", "The SLO's objective (0.999)", ["slo"], registry=r
        )
        self.attainment = Gauge(
            "synthmon_slo_attainment_ratio",
            "Good share of checked runs over the SLO window",
            ["slo"],
            registry=r,
        )
        self.remaining = Gauge(
            "synthmon_slo_error_budget_remaining_ratio",
            "Share of the window's error budget left (negative when overspent)",
            ["slo"],
            registry=r,
        )
        self.burn = Gauge(
            "synthmon_slo_burn_rate",
            "Error ratio over the window divided by the error budget (1 = spends it exactly)",
            ["slo", "window"],
            registry=r,
        )
        self._shown: set[tuple[str, ...]] = set()

    def update(self, statuses: Sequence[SloStatus]) -> None:
        """Set every series from ``statuses``; series of SLOs or windows gone are removed."""
        shown: set[tuple[str, ...]] = set()

        def put(gauge: Gauge, value: float | None, *labels: str) -> None:
            if value is not None:
                gauge.labels(*labels).set(value)
                shown.add((gauge._name, *labels))

        for s in statuses:
            name = s.slo.slo_name
            put(self.objective, s.objective, name)
            put(self.attainment, s.attainment, name)
            put(self.remaining, s.budget_remaining, name)
            for window, rate in s.rates.items():
                put(self.burn, rate, name, window_text(window))
        gauges = {g._name: g for g in (self.objective, self.attainment, self.remaining, self.burn)}
        for gone in self._shown - shown:
            gauges[gone[0]].remove(*gone[1:])
        self._shown = shown


class SloService:
    """The SLOs of the config in force, evaluated from the history store.

    ``run`` crosses to the store's threads; ``gate`` says whether the store is open (nothing is
    evaluated before). ``feed`` receives each SLO's burn as a pseudo-probe run.
    """

    def __init__(
        self,
        slos: Sequence[SloConfig],
        store: HistoryStore,
        clock: Clock,
        metrics: SloMetrics,
        *,
        feed: Callable[[ProbeResult], Awaitable[None]] | None = None,
        environment: str = "",
        location: str | None = None,
        run: RunInThread | None = None,
        gate: StoreGate | None = None,
        logger: Any = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._slos = tuple(slos)
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._feed = feed
        self._env = environment
        #: This daemon's location: the pairs' short windows count its runs only (see evaluate()).
        self._location = location
        self._run: RunInThread = run or asyncio.to_thread
        self._gate = gate
        self._log = logger if logger is not None else structlog.get_logger("synthmon.slo")
        self._timeout_s = timeout_s
        #: The last evaluation (time, statuses): the page and the API reuse it while it is fresh.
        self._last: tuple[datetime, list[SloStatus]] | None = None

    @property
    def slos(self) -> tuple[SloConfig, ...]:
        """The SLOs in force."""
        return self._slos

    def reconfigure(self, slos: Sequence[SloConfig]) -> None:
        """Apply a reloaded config's SLOs (from the next evaluation on)."""
        self._slos = tuple(slos)
        self._last = None

    def statuses(self, now: datetime) -> list[SloStatus]:
        """Every SLO's status at ``now`` (blocking: call on a store thread)."""
        statuses = read_statuses(self._store, self._slos, now, self._location)
        self._last = (now, statuses)
        return statuses

    def recent(self, now: datetime) -> list[SloStatus]:
        """The last evaluation while it is younger than :data:`EVALUATE_EVERY_S`, else a new one
        (blocking). A 30-day window reads a month of skipped steps: once a minute, not per page view."""
        last = self._last
        if last is not None and 0 <= (now - last[0]).total_seconds() < EVALUATE_EVERY_S:
            return last[1]
        return self.statuses(now)

    def page_section(self, now: datetime) -> str:
        """The status page's SLO section (blocking: may read the store); empty without SLOs."""
        return render_section(self.recent(now)) if self._slos else ""

    async def evaluate(self) -> list[SloStatus] | None:
        """One evaluation: metrics set, each burn fed to the incident path. None when the store
        is not open or failed (logged; the next evaluation tries again)."""
        if not self._slos or (self._gate is not None and not self._gate.ready):
            return None
        now = self._clock.now()
        try:
            statuses: list[SloStatus] = await self._run(functools.partial(self.statuses, now))
        except Exception as exc:  # the store being down must not kill the scheduler's job
            self._log.warning("slo_evaluation_failed", error=type(exc).__name__)
            return None
        self._metrics.update(statuses)
        if self._feed is not None:
            for status in statuses:
                if status.counts.total:  # no data: neither a burn nor a recovery
                    await self._feed(burn_result(status, environment=self._env))
        return statuses

    def job(self, interval_s: float = EVALUATE_EVERY_S) -> tuple[str, float, Callable[[], Awaitable[Any]]]:
        """``(name, interval_s, coroutine function)`` for the daemon's scheduler."""
        return ("slo-evaluation", interval_s, self.evaluate)

    async def api(self, request: Request) -> Response:
        """``GET /api/v1/slo``: every SLO's attainment, budget left, burn rates and alert pairs."""
        if self._gate is not None and not self._gate.ready:
            return JSONResponse({"error": "store not ready (synthmon keeps retrying)"}, status_code=503)
        now = self._clock.now()
        try:
            statuses = await asyncio.wait_for(self._run(functools.partial(self.recent, now)), self._timeout_s)
        except Exception as exc:
            return JSONResponse({"error": f"store unavailable ({type(exc).__name__})"}, status_code=503)
        as_of = statuses[0].as_of if statuses else now
        return JSONResponse({"as_of": as_of.isoformat(), "slos": [s.to_dict() for s in statuses]})

    def routes(self) -> list[BaseRoute]:
        """The routes to mount in the core server."""
        return [Route("/api/v1/slo", self.api, methods=["GET"])]
