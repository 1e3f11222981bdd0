"""How a run maps to stored rows and back: the ``runs`` row (columns and packed steps), the hourly
rollup row a batch folds into, and the rollup hour. Shared by the SQL store's writes and reads so that
both sides of the mapping live in one place.
"""

from __future__ import annotations

from typing import Any

from monitor.results import ProbeResult
from monitor.store.epoch import from_epoch, to_epoch
from monitor.store.latency import BUCKET_COLUMNS, LATENCY_BUCKETS, bucket_index
from monitor.store.runcodec import pack_steps, unpack_steps
from probes.base import Status, StepResult

#: Stored status text → Status (a dict lookup: the status page reads about a thousand step rows).
STATUS = {s.value: s for s in Status}


def hour_bucket(seconds: float) -> int:
    """The start (epoch seconds) of the UTC hour containing ``seconds``: the rollup key."""
    return int(seconds // 3600) * 3600


class RollupAgg:
    """One rollup row's worth of a batch: counts, durations and latency buckets, added up in place.

    Only runs and steps that worked (PASS or DEGRADED) count into the buckets: a timeout or an
    early failure says nothing about how fast the platform is when it works.
    """

    __slots__ = ("buckets", "degraded", "duration_max", "duration_sum", "errors", "failures", "runs")

    def __init__(self) -> None:
        self.runs = self.failures = self.errors = self.degraded = 0
        self.duration_sum = self.duration_max = 0.0
        self.buckets = [0] * LATENCY_BUCKETS

    def add(self, status: Status, duration: float) -> None:
        self.runs += 1
        self.failures += status is Status.FAIL
        self.errors += status is Status.ERROR
        self.degraded += status is Status.DEGRADED
        self.duration_sum += duration
        self.duration_max = max(self.duration_max, duration)
        if status is Status.PASS or status is Status.DEGRADED:
            self.buckets[bucket_index(duration)] += 1

    def row(self, probe: str, step: str, hour: int) -> dict[str, Any]:
        """The parameters of this row for the rollup upsert."""
        row: dict[str, Any] = {
            "probe": probe,
            "step": step,
            "hour": hour,
            "runs": self.runs,
            "failures": self.failures,
            "errors": self.errors,
            "degraded": self.degraded,
            "duration_sum": self.duration_sum,
            "duration_max": self.duration_max,
        }
        row.update(zip(BUCKET_COLUMNS, self.buckets, strict=True))
        return row


def run_row(result: ProbeResult) -> dict[str, Any]:
    """The ``runs`` row of ``result``: its columns and its packed steps."""
    failing = result.failing_step
    return {
        "run_id": result.run_id,
        "probe": result.probe,
        "kind": result.kind,
        "environment": result.environment,
        "location": result.location,
        "started_at": to_epoch(result.started_at),
        "duration_s": result.duration_s,
        "status": result.status.value,
        "failing_step": failing.name if failing else None,
        "detail": pack_steps([s.to_dict() for s in result.steps]),
    }


def stored_result(row: Any) -> ProbeResult:
    """The run stored in ``row``, selected as :data:`monitor.history.readsql.RUN_COLUMNS` (read by
    position: a SQLAlchemy row and a DB-API tuple alike)."""
    probe, kind, run_id, environment, location, started_at, duration_s, status, detail = row
    return ProbeResult(
        probe=probe,
        kind=kind,
        run_id=run_id,
        started_at=from_epoch(started_at),
        duration_s=float(duration_s),
        status=STATUS[status],
        steps=tuple(StepResult.from_dict(s) for s in unpack_steps(detail)),
        environment=environment,
        location=location,
    )
