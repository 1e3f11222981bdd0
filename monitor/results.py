"""ProbeResult: one run of one probe, its steps and timing, JSON-serialisable with a schema version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from probes.base import Status, StepResult, worst

#: Bumped when the JSON shape changes incompatibly (history rows and `synthmon once --format json`).
SCHEMA_VERSION = 1


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

    @property
    def failing_step(self) -> StepResult | None:
        """The first step that is not OK (FAIL or ERROR), or None."""
        for step in self.steps:
            if step.status in (Status.FAIL, Status.ERROR):
                return step
        return None

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
            "started_at": self.started_at.isoformat(),
            "duration_s": round(self.duration_s, 6),
            "status": self.status.value,
            "steps": [s.to_dict() for s in self.steps],
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
        )


class ResultSink(Protocol):
    """Something that consumes every finished run (metrics, history, incidents).

    ``handle`` must not raise for its own failures (a failing store or Slack never stops probing):
    it logs, counts and buffers instead.
    """

    async def handle(self, result: ProbeResult) -> None: ...
