"""Baselines and streaks → a run's latency verdict. Pure: no clock, no store, no state of its own.

A probe's run (step ``""``) and each of its steps that worked are compared with their baseline:
slower than ``factor`` times the baseline counts one more slow run in a row for that probe and step,
anything else resets its count. At ``consecutive`` slow runs in a row the probe or step is
*regressed*: its PASS steps become DEGRADED with the cause ``latency_regression`` and a message
naming the baseline in words, and a PASS run becomes DEGRADED. A FAIL or ERROR run is left as it is
and changes no count: its timings say nothing about how fast the platform is when it works.

The floor keeps loopback-fast steps from flapping: a baseline under ``floor`` only counts a run as
slow when the run is also at least ``min_slowdown`` slower than the baseline (2 ms → 7 ms is
"3.5 times slower" and nothing anyone should be paged for).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from monitor.baselines.config import BaselinesConfig
from monitor.baselines.percentile import percentile
from monitor.diagnosis import LATENCY_REGRESSION_DIAGNOSIS
from monitor.history.base import LatencyHistogram
from monitor.results import ProbeResult
from probes.base import Status, StepResult

#: (probe, step); step "" is the probe's run as a whole, as in the rollups.
Key = tuple[str, str]
#: The multiplication sign, written as an escape (the linter flags it as a look-alike of "x").
TIMES = "\u00d7"
_WORKED = (Status.PASS, Status.DEGRADED)


def seconds(value: float) -> str:
    """``1.92 s``: two decimals below ten seconds, one above."""
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def baseline_name(window_s: float, q: float) -> str:
    """The baseline in words: ``7-day p95``, ``12-hour p99``."""
    if window_s % 86400 == 0:
        span = f"{int(window_s // 86400)}-day"
    elif window_s % 3600 == 0:
        span = f"{int(window_s // 3600)}-hour"
    else:
        span = f"{window_s / 60:g}-minute"
    return f"{span} p{q * 100:g}"


@dataclass(frozen=True, slots=True)
class Baseline:
    """The usual latency of one probe (``step`` "") or step: ``seconds`` is the window's percentile."""

    probe: str
    step: str
    seconds: float
    runs: int
    since: datetime
    name: str  # "7-day p95"


def baselines_from(
    histograms: Iterable[LatencyHistogram], config: BaselinesConfig, now: datetime
) -> dict[Key, Baseline]:
    """The baselines of every probe and step with enough history: at least ``min_runs`` runs in the
    window, the oldest of them at least ``min_span`` before ``now``. The others get none (not judged)."""
    name = baseline_name(config.window, config.percentile)
    out: dict[Key, Baseline] = {}
    for h in histograms:
        if h.runs < config.min_runs or (now - h.first_hour).total_seconds() < config.min_span:
            continue
        value = percentile(h.counts, config.percentile)
        if value is not None and value > 0:
            out[(h.probe, h.step)] = Baseline(h.probe, h.step, value, h.runs, h.first_hour, name)
    return out


@dataclass(frozen=True, slots=True)
class Finding:
    """How one probe or step of a run compares with its baseline."""

    probe: str
    step: str
    duration_s: float
    baseline: Baseline
    slow: bool
    streak: int  # slow runs in a row, this one included
    regressed: bool

    @property
    def ratio(self) -> float:
        """How many times its baseline the run took."""
        return self.duration_s / self.baseline.seconds

    @property
    def message(self) -> str:
        """``upload took 1.92 s, 3.1x its 7-day p95 of 0.61 s (3 runs in a row)``, with a times sign."""
        who = self.step or self.probe
        runs = "1 run" if self.streak == 1 else f"{self.streak} runs in a row"
        return (
            f"{who} took {seconds(self.duration_s)}, {self.ratio:.1f}{TIMES} its {self.baseline.name} "
            f"of {seconds(self.baseline.seconds)} ({runs})"
        )


@dataclass(frozen=True, slots=True)
class Judgement:
    """A judged run: the result to publish, the new streaks and what each probe/step showed."""

    result: ProbeResult
    streaks: dict[Key, int]
    findings: tuple[Finding, ...]

    @property
    def regressed(self) -> tuple[Finding, ...]:
        """The findings that are latency regressions."""
        return tuple(f for f in self.findings if f.regressed)


def is_slow(duration_s: float, baseline_s: float, config: BaselinesConfig) -> bool:
    """Slower than ``factor`` times the baseline (and, under the floor, by at least ``min_slowdown``)."""
    if duration_s <= config.factor * baseline_s:
        return False
    return baseline_s >= config.floor or duration_s - baseline_s >= config.min_slowdown


def judge(
    result: ProbeResult,
    baselines: Mapping[Key, Baseline],
    streaks: Mapping[Key, int],
    config: BaselinesConfig,
) -> Judgement:
    """``result`` compared with ``baselines``, given the slow runs in a row so far (``streaks``)."""
    new = dict(streaks)
    if result.status not in _WORKED:
        return Judgement(result, new, ())
    timed = [("", result.duration_s), *((s.name, s.duration_s) for s in result.steps if s.status in _WORKED)]
    findings: list[Finding] = []
    for step, took in timed:
        key = (result.probe, step)
        base = baselines.get(key)
        if base is None:
            new.pop(key, None)
            continue
        slow = is_slow(took, base.seconds, config)
        new[key] = new.get(key, 0) + 1 if slow else 0
        regressed = new[key] >= config.consecutive
        findings.append(Finding(result.probe, step, took, base, slow, new[key], regressed))
    judged = Judgement(result, new, tuple(findings))
    if not judged.regressed:
        return judged
    return replace(judged, result=_mark(result, judged.regressed, baselines))


def _mark(
    result: ProbeResult, regressed: Sequence[Finding], baselines: Mapping[Key, Baseline]
) -> ProbeResult:
    """``result`` with its regressed PASS steps DEGRADED (cause ``latency_regression``); a regressed
    run without a regressed step marks the step that lost the most time against its own baseline."""
    by_step = {f.step: f for f in regressed if f.step}
    run = next((f for f in regressed if not f.step), None)
    if run is not None and not by_step:
        carrier = _carrier(result, baselines)
        if carrier is not None:
            by_step[carrier] = run
    steps = tuple(
        _degrade(s, by_step[s.name]) if s.name in by_step and s.status is Status.PASS else s
        for s in result.steps
    )
    if steps == result.steps:
        return result
    status = Status.DEGRADED if result.status is Status.PASS else result.status
    return replace(result, steps=steps, status=status)


def _carrier(result: ProbeResult, baselines: Mapping[Key, Baseline]) -> str | None:
    """The PASS step that took the most time over its own baseline (its whole time without one)."""
    best: tuple[float, str] | None = None
    for s in result.steps:
        if s.status is not Status.PASS:
            continue
        base = baselines.get((result.probe, s.name))
        excess = s.duration_s - (base.seconds if base is not None else 0.0)
        if best is None or excess > best[0]:
            best = (excess, s.name)
    return best[1] if best is not None else None


def _degrade(step: StepResult, finding: Finding) -> StepResult:
    return step.with_(
        status=Status.DEGRADED,
        message=finding.message,
        diagnosis=LATENCY_REGRESSION_DIAGNOSIS,
    )
