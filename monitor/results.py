"""ProbeResult: one run of one probe, its steps and timing, JSON-serialisable with a schema version.

A run's own summary is :class:`Checks`, "N/M passed" over the steps that ran: derived from the
steps (never a step of its own, which would count every failure twice in steps, metrics, uptime
and alerts), so stored runs of any age get it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from probes.base import Status, StepResult, worst

#: Bumped when the JSON shape changes incompatibly (history rows and `synthmon once --format json`).
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Checks:
    """How many of a run's steps passed: ``passed`` (PASS or DEGRADED), ``failed`` (FAIL or ERROR)
    and ``skipped``; ``failing`` names the failed steps in run order.

    ``total`` counts the steps that ran: a SKIPPED step checked nothing, so "9/10 passed" means
    ten checks ran and one failed (alb_health's checks never skip one another).
    """

    passed: int
    failed: int
    skipped: int
    failing: tuple[str, ...]

    @property
    def total(self) -> int:
        """Steps that ran (passed + failed)."""
        return self.passed + self.failed

    @classmethod
    def of(cls, steps: tuple[StepResult, ...] | list[StepResult]) -> Checks:
        """The counts of ``steps``."""
        failing = tuple(s.name for s in steps if s.status in (Status.FAIL, Status.ERROR))
        skipped = sum(1 for s in steps if s.status is Status.SKIPPED)
        return cls(
            passed=len(steps) - len(failing) - skipped, failed=len(failing), skipped=skipped, failing=failing
        )

    @property
    def summary(self) -> str:
        """``9/10 passed; failing: registry_health`` (``, 4 skipped`` when steps were skipped)."""
        text = f"{self.passed}/{self.total} passed"
        if self.skipped:
            text += f", {self.skipped} skipped"
        if self.failing:
            text += "; failing: " + ", ".join(self.failing)
        return text

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (``total`` and the one-line ``summary`` included for readers)."""
        return {
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "total": self.total,
            "failing": list(self.failing),
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One run of one probe. ``status`` is derived from the steps unless the runner overrides it."""

    probe: str
    kind: str
    run_id: str
    started_at: datetime
    duration_s: float
    status: Status
    steps: tuple[StepResult, ...] = field(default_factory=tuple)
    environment: str = ""
    #: Where the run was made from (:mod:`monitor.location`); runs stored before locations load
    #: as the default location.
    location: str = "default"

    @property
    def failing_step(self) -> StepResult | None:
        """The first step that is not OK (FAIL or ERROR), or None."""
        for step in self.steps:
            if step.status in (Status.FAIL, Status.ERROR):
                return step
        return None

    @property
    def checks(self) -> Checks:
        """The run's "N/M passed" summary over its steps."""
        return Checks.of(self.steps)

    @staticmethod
    def status_of(steps: tuple[StepResult, ...] | list[StepResult]) -> Status:
        """The status of a run made of ``steps`` (FAIL beats ERROR beats DEGRADED beats PASS)."""
        return worst([s.status for s in steps])

    def to_dict(self) -> dict[str, Any]:
        """The stored / printed shape (``schema`` first)."""
        return {
            "schema": SCHEMA_VERSION,
            "probe": self.probe,
            "kind": self.kind,
            "run_id": self.run_id,
            "environment": self.environment,
            "location": self.location,
            "started_at": self.started_at.isoformat(),
            "duration_s": round(self.duration_s, 6),
            "status": self.status.value,
            "steps": [s.to_dict() for s in self.steps],
            # Derived (from_dict ignores it); written for readers of stored and printed runs.
            "checks": self.checks.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeResult:
        """The inverse of :meth:`to_dict`."""
        return cls(
            probe=str(d["probe"]),
            kind=str(d["kind"]),
            run_id=str(d["run_id"]),
            started_at=datetime.fromisoformat(str(d["started_at"])),
            duration_s=float(d["duration_s"]),
            status=Status(d["status"]),
            steps=tuple(StepResult.from_dict(s) for s in d.get("steps", [])),
            environment=str(d.get("environment", "")),
            location=str(d.get("location") or "default"),
        )


class ResultSink(Protocol):
    """Something that consumes every finished run (metrics, history, incidents).

    ``handle`` must not raise for its own failures (a failing store or Slack never stops probing):
    it logs, counts and buffers instead.
    """

    async def handle(self, result: ProbeResult) -> None: ...


class ResultTransformer(Protocol):
    """Something that may change a finished run before metrics and sinks see it (the latency
    baselines turn a PASS into DEGRADED). ``transform`` must not raise for its own failures."""

    async def transform(self, result: ProbeResult) -> ProbeResult: ...
