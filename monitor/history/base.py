"""The history store interface (owned by its users: the sink, the CLI, the API, retention) and its rows.

One implementation (:class:`monitor.history.sqlstore.SqlHistoryStore`) serves it on SQLite and
PostgreSQL. Methods are blocking; callers cross to a store thread once per component.

Exceptions: any ``sqlalchemy.exc.SQLAlchemyError`` (the database is unreachable, locked, ...) escapes
these methods; callers that must not fail (the result sinks) catch it, count it and buffer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol

from monitor.results import ProbeResult
from probes.base import Status

if TYPE_CHECKING:  # annotations only: the module imports SQLAlchemy, which the read commands skip
    from monitor.history.locations import LocationRun


@dataclass(frozen=True, slots=True)
class UptimeRow:
    """Counts for one probe (``step`` None) or one of its steps over a window."""

    probe: str
    step: str | None
    runs: int
    failures: int
    errors: int
    degraded: int
    duration_sum: float
    duration_max: float

    @property
    def uptime(self) -> float | None:
        """Share of checked runs that were not FAIL; ERROR runs are not the platform's fault and are
        left out of both sides. None when nothing was checked."""
        checked = self.runs - self.errors
        if checked <= 0:
            return None
        return (checked - self.failures) / checked


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """The latency buckets (:data:`monitor.store.latency.LATENCY_BOUNDS_S`) of one probe (``step``
    "") or step, summed over a window; ``first_hour`` is the oldest hour holding any of them."""

    probe: str
    step: str
    first_hour: datetime
    counts: tuple[int, ...]

    @property
    def runs(self) -> int:
        """How many runs the buckets hold."""
        return sum(self.counts)


class StepMark(NamedTuple):
    """One step of a stored run, as much as a status bar shows of it (a named tuple: the status page
    builds about a thousand per read, and a frozen dataclass costs several times more to build)."""

    name: str
    status: Status
    duration_s: float
    http_status: int | None


@dataclass(frozen=True, slots=True)
class RunMark:
    """One stored run as a status bar shows it: read from the run's columns and its step rows, without
    decoding the stored run (the status page reads 30 per probe; :meth:`HistoryStore.runs_by_id`
    loads the few it shows in full)."""

    probe: str
    run_id: str
    started_at: datetime
    duration_s: float
    status: Status
    failing_step: str | None
    steps: tuple[StepMark, ...]


class HistoryStore(Protocol):
    """Runs history: what the history sink, the CLI, the API and the retention job need."""

    def append_runs(self, results: Sequence[ProbeResult]) -> int: ...

    def runs(self, *, probe: str | None, since: datetime, limit: int) -> list[ProbeResult]: ...

    def latest_runs(self) -> dict[str, ProbeResult]: ...

    def latest_by_location(self, *, since: datetime) -> list[LocationRun]: ...

    def recent_runs(self, *, per_probe: int) -> dict[str, list[RunMark]]: ...

    def runs_by_id(self, run_ids: Sequence[str]) -> dict[str, ProbeResult]: ...

    def uptime(self, *, since: datetime, until: datetime, now: datetime) -> list[UptimeRow]: ...

    def probe_uptime(
        self, *, probes: Sequence[str], windows: Mapping[str, datetime], until: datetime, now: datetime
    ) -> dict[str, dict[str, UptimeRow]]: ...

    def good_bad(
        self, *, since: datetime, until: datetime, now: datetime
    ) -> dict[tuple[str, str | None], tuple[int, int]]: ...

    def good_bad_at(
        self, *, since: datetime, until: datetime, location: str
    ) -> dict[tuple[str, str | None], tuple[int, int]]: ...

    def prune(self, now: datetime) -> Mapping[str, int]: ...
