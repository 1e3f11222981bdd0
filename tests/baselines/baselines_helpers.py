"""Builders shared by the baselines tests: runs with chosen step durations, and seeded history."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from monitor.results import ProbeResult
from probes.base import Status, StepResult

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def run(
    steps: Mapping[str, float],
    *,
    probe: str = "artifact_roundtrip",
    at: datetime = T0,
    status: Status = Status.PASS,
    failing: str | None = None,
) -> ProbeResult:
    """A run of ``probe`` whose steps took ``steps`` seconds (``failing`` names a FAIL step)."""
    parts = tuple(
        StepResult(name=name, status=Status.FAIL if name == failing else Status.PASS, duration_s=took)
        for name, took in steps.items()
    )
    return ProbeResult(
        probe=probe,
        kind=probe,
        run_id=uuid.uuid4().hex,
        started_at=at,
        duration_s=sum(steps.values()),
        status=Status.FAIL if failing else status,
        steps=parts,
        environment="test",
    )


def history(steps: Mapping[str, float], *, runs: int, until: datetime, every: timedelta) -> list[ProbeResult]:
    """``runs`` healthy runs of ``steps`` ending at ``until``, one per ``every``; durations vary by
    up to +-10 % around the given ones so the buckets hold a spread, as real history does."""
    out = []
    for i in range(runs):
        wobble = 0.9 + 0.2 * ((i * 37) % 11) / 10
        out.append(run({k: v * wobble for k, v in steps.items()}, at=until - every * (runs - i)))
    return out
