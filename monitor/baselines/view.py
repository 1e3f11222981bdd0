"""What the status page and ``/api/v1/status`` show of the latency baselines: per probe, its run's
and its steps' baselines and regressions (rendered here, so the page module only calls in)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from monitor.baselines.judge import TIMES, seconds


@dataclass(frozen=True, slots=True)
class StepLatency:
    """One probe (``step`` "") or step with a baseline, and how its latest run compared."""

    step: str
    baseline_s: float
    baseline: str  # "7-day p95"
    runs: int
    last_s: float | None = None
    streak: int = 0
    regressed: bool = False
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (in ``/api/v1/status``, per probe under ``latency``)."""
        return {
            "step": self.step,
            "baseline_seconds": round(self.baseline_s, 6),
            "baseline": self.baseline,
            "baseline_runs": self.runs,
            "last_seconds": None if self.last_s is None else round(self.last_s, 6),
            "slow_runs_in_a_row": self.streak,
            "regressed": self.regressed,
            "message": self.message,
        }


#: Probe name → its run's and steps' latency views (run first, then steps by name).
LatencyView = Mapping[str, Sequence[StepLatency]]


def latency_json(view: LatencyView, probe: str) -> list[dict[str, Any]]:
    """The ``latency`` list of one probe in ``/api/v1/status`` (empty without baselines)."""
    return [s.to_dict() for s in view.get(probe, ())]


def latency_html(view: LatencyView, probe: str) -> str:
    """The latency line of a probe's card: a mark per regressed probe/step, and the baselines."""
    rows = view.get(probe, ())
    if not rows:
        return ""
    marks = "".join(
        f"<div class='latency regressed' data-latency-step='{escape(s.step)}'>"
        f"<b>LATENCY REGRESSION</b> {escape(s.message)}</div>"
        for s in rows
        if s.regressed
    )
    parts = []
    for s in rows:
        last = ""
        if s.last_s is not None:
            last = f" (last {escape(seconds(s.last_s))}, {s.last_s / s.baseline_s:.1f}{TIMES})"
        name = escape(s.step or "run")
        flag = " &#9888;" if s.regressed else ""
        parts.append(f"{name} {escape(seconds(s.baseline_s))}{last}{flag}")
    baseline = escape(rows[0].baseline)
    return f"{marks}<div class='muted latency'>latency baseline ({baseline}): " + " · ".join(parts) + "</div>"
