"""Each SLO's state at one moment: attainment, budget left, burn rates, which alert pairs fire.

:func:`evaluate` is pure (counts in, :class:`SloStatus` out); :func:`read_statuses` fetches the
counts from a :class:`monitor.history.base.HistoryStore` (blocking: callers cross to a store thread)
with one store call per distinct window length, whatever the number of SLOs.
:func:`burn_result` turns a status into the run of a pseudo-probe (``slo:<name>``) that the incident
path judges like any probe's: FAIL while a pair fires, PASS otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitor.diagnosis import ERROR_BUDGET_BURN
from monitor.history.base import HistoryStore
from monitor.results import ProbeResult
from monitor.slo import budget
from monitor.slo.budget import Counts
from monitor.slo.config import BurnAlert, SloConfig, window_text
from probes.base import Diagnosis, Status, StepResult

#: The cause of a burn-rate incident (its title is in :mod:`monitor.diagnosis`).
BURN_CAUSE = ERROR_BUDGET_BURN
#: The one step of a burn-rate pseudo-run.
BURN_STEP = "error_budget"

#: ``window seconds -> {(probe, step): (good, bad)}``, as the history store answers.
CountsByWindow = Mapping[float, Mapping[tuple[str, str | None], tuple[int, int]]]


@dataclass(frozen=True, slots=True)
class PairStatus:
    """One alert pair of an SLO, evaluated."""

    alert: BurnAlert
    verdict: budget.PairVerdict

    @property
    def firing(self) -> bool:
        """Both windows burn at the pair's factor or faster."""
        return self.verdict.firing


@dataclass(frozen=True, slots=True)
class SloStatus:
    """One SLO at ``as_of``: its window's counts, burn rate per window length, its pairs."""

    slo: SloConfig
    as_of: datetime
    counts: Counts
    rates: Mapping[float, float | None]
    pairs: tuple[PairStatus, ...]

    @property
    def objective(self) -> float:
        """The objective as a ratio (0.999)."""
        return self.slo.objective / 100.0

    @property
    def attainment(self) -> float | None:
        """Good share of the window's checked runs; None without runs."""
        return budget.attainment(self.counts)

    @property
    def budget_remaining(self) -> float | None:
        """Share of the window's error budget left (negative once overspent); None without runs."""
        return budget.budget_remaining(self.counts, self.objective)

    @property
    def firing(self) -> tuple[PairStatus, ...]:
        """The pairs firing now."""
        return tuple(p for p in self.pairs if p.firing)

    @property
    def state(self) -> str:
        """``no data``, ``page`` or ``ticket`` (a pair of that severity fires), ``exhausted`` (the
        budget is spent, nothing burns fast now) or ``ok``."""
        if self.counts.total == 0:
            return "no data"
        severities = {p.alert.severity for p in self.firing}
        if "page" in severities:
            return "page"
        if "ticket" in severities:
            return "ticket"
        remaining = self.budget_remaining
        return "exhausted" if remaining is not None and remaining <= 0 else "ok"

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``/api/v1/slo`` and ``synthmon slo --json``."""
        slo = self.slo
        return {
            "slo": slo.slo_name,
            "probe": slo.probe,
            "step": slo.step,
            "objective": slo.objective,
            "window": window_text(slo.window),
            "window_s": slo.window,
            "good": self.counts.good,
            "bad": self.counts.bad,
            "attainment": self.attainment,
            "error_budget": slo.budget,
            "budget_remaining": self.budget_remaining,
            "burn_rates": {window_text(w): r for w, r in sorted(self.rates.items())},
            "alerts": [
                {
                    "windows": p.alert.label,
                    "factor": p.alert.factor,
                    "severity": p.alert.severity,
                    "long_burn_rate": p.verdict.long_rate,
                    "short_burn_rate": p.verdict.short_rate,
                    "firing": p.firing,
                }
                for p in self.pairs
            ],
            "state": self.state,
            "as_of": self.as_of.isoformat(),
        }


def windows_of(slos: Sequence[SloConfig]) -> list[float]:
    """Every window length the SLOs need counted (their windows and each pair's two), ascending."""
    found = {slo.window for slo in slos}
    for slo in slos:
        for alert in slo.burn_alerts:
            found |= {alert.long, alert.short}
    return sorted(found)


def evaluate(
    slos: Sequence[SloConfig], counts: CountsByWindow, now: datetime, local: CountsByWindow | None = None
) -> list[SloStatus]:
    """Each SLO's status from the counts of every window length it needs (see :func:`windows_of`).

    ``local``: the short windows' counts of this daemon's own location only. A pair then fires when
    the budget burns overall (long window) *and* this location sees it now (short window), so a
    burn fed to the incident path passes the quorum of locations only when enough of them see it:
    one zone whose own network fails does not page through its SLOs either.
    """
    out = []
    for slo in slos:

        def of(window: float, slo: SloConfig = slo, source: CountsByWindow = counts) -> Counts:
            good, bad = source.get(window, {}).get((slo.probe, slo.step), (0, 0))
            return Counts(good, bad)

        def here(window: float, slo: SloConfig = slo) -> Counts:
            return of(window, slo, local) if local is not None else of(window, slo)

        objective = slo.objective / 100.0
        lengths = sorted({w for a in slo.burn_alerts for w in (a.long, a.short)})
        pairs = tuple(
            PairStatus(a, budget.pair(of(a.long), here(a.short), a.factor, objective))
            for a in slo.burn_alerts
        )
        rates = {w: budget.burn_rate(of(w), objective) for w in lengths}
        out.append(SloStatus(slo, now, of(slo.window), rates, pairs))
    return out


def read_statuses(
    store: HistoryStore, slos: Sequence[SloConfig], now: datetime, location: str | None = None
) -> list[SloStatus]:
    """Each SLO's status at ``now`` from the history store (blocking); with ``location``, the pairs'
    short windows count that location's runs only (see :func:`evaluate`)."""
    counts = {
        w: store.good_bad(since=now - timedelta(seconds=w), until=now, now=now) for w in windows_of(slos)
    }
    local = None
    if location is not None:
        shorts = {a.short for slo in slos for a in slo.burn_alerts}
        local = {
            w: store.good_bad_at(since=now - timedelta(seconds=w), until=now, location=location)
            for w in shorts
        }
    return evaluate(slos, counts, now, local)


def _percent(value: float) -> str:
    return f"{value * 100:.0f} %"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}×"


def _human(seconds: float) -> str:
    """``1 h``, ``5 min``, ``30 days``: a window length in words."""
    if seconds % 86400 == 0:
        days = int(seconds // 86400)
        return f"{days} day" + ("s" if days != 1 else "")
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return window_text(seconds)


def burn_message(status: SloStatus) -> str:
    """The burn in words, for the incident: which pair fires, each window's rate, the budget left.

    ``auth is burning its 30-day error budget 14.4× too fast: 1 h at 16.2×, 5 min at 20.0×; 38 % of
    the budget left``. Without a firing pair: the budget left and the fastest rate.
    """
    slo = status.slo
    days = f"{slo.window / 86400:g}-day" if slo.window % 86400 == 0 else f"{_human(slo.window)}"
    left = status.budget_remaining
    left_text = "no runs counted yet" if left is None else f"{_percent(max(left, 0.0))} of the budget left"
    firing = status.firing
    if not firing:
        return f"{slo.slo_name} is within its {days} error budget; {left_text}"
    top = max(firing, key=lambda p: (p.alert.severity == "page", p.alert.factor))
    v = top.verdict
    return (
        f"{slo.slo_name} is burning its {days} error budget {top.alert.factor:g}× too fast: "
        f"{_human(top.alert.long)} at {_rate(v.long_rate)}, {_human(top.alert.short)} at "
        f"{_rate(v.short_rate)}; {left_text}"
    )


def burn_result(status: SloStatus, *, environment: str = "") -> ProbeResult:
    """The SLO's burn as one run of its pseudo-probe: FAIL while a pair fires, else PASS.

    The failing step's ``error_class`` is the severity of the pair firing (``page``/``ticket``), so a
    change from one to the other updates the open incident.
    """
    slo = status.slo
    firing = status.firing
    severity = "page" if any(p.alert.severity == "page" for p in firing) else "ticket"
    step = StepResult(
        name=BURN_STEP,
        status=Status.FAIL if firing else Status.PASS,
        error_class=severity if firing else None,
        message=burn_message(status),
        diagnosis=(
            Diagnosis(
                cause=BURN_CAUSE,
                hint=f"{slo.probe} fails often enough to spend its error budget before the window ends",
                action=f"Look at {slo.probe}'s failing step and incident; `synthmon slo` shows the budget.",
            )
            if firing
            else None
        ),
    )
    stamp = int(status.as_of.timestamp())
    return ProbeResult(
        probe=slo.pseudo_probe,
        kind="slo",
        # Unique per SLO and evaluation: the incident id is "<pseudo-probe>-<run id>".
        run_id=f"slo-{stamp}",
        started_at=status.as_of,
        duration_s=0.0,
        status=step.status,
        steps=(step,),
        environment=environment,
    )
