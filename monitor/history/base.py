"""The store interfaces, one narrow Protocol per consumer, and the rows they exchange.

One implementation (:class:`monitor.history.sqlstore.SqlStore`) serves all of them on SQLite and
PostgreSQL. Methods are blocking; callers cross to a thread once per component (``asyncio.to_thread``).

Exceptions: any ``sqlalchemy.exc.SQLAlchemyError`` (the database is unreachable, locked, ...) escapes
these methods; callers that must not fail (the result sinks) catch it, count it and buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from monitor.alerting.base import Event
from monitor.alerting.incidents import IncidentState
from monitor.alerting.silences import Silence
from monitor.results import ProbeResult


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
class IncidentRecord:
    """One probe's part in one incident."""

    incident_id: str
    probe: str
    incident_probe: str
    opened_at: datetime
    resolved_at: datetime | None
    summary: str


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One event queued for one channel, as claimed by a dispatcher."""

    id: int
    channel: str
    event: Event
    attempts: int
    created_at: datetime
    lease_owner: str


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What a retention run removed."""

    runs: int
    rollups: int
    outbox: int
    silences: int


@dataclass(frozen=True, slots=True)
class IncidentView:
    """What the state machine may look at, read inside the per-probe transaction."""

    state: IncidentState
    upstreams: Mapping[str, IncidentState]
    silences: Sequence[Silence]


#: ``decide(view) -> (new state, events)``: called inside the transaction that stores its outcome.
Decide = Callable[[IncidentView], tuple[IncidentState, list[Event]]]


class HistoryStore(Protocol):
    """Runs history: what the history sink, the CLI, the API and the retention job need."""

    def append_runs(self, results: Sequence[ProbeResult]) -> int: ...

    def runs(self, *, probe: str | None, since: datetime, limit: int) -> list[ProbeResult]: ...

    def latest_runs(self) -> dict[str, ProbeResult]: ...

    def uptime(self, *, since: datetime, until: datetime, now: datetime) -> list[UptimeRow]: ...

    def prune(self, now: datetime) -> PruneReport: ...


class IncidentStore(Protocol):
    """Incident state and the outbox: what the incident sink and the dispatcher need."""

    def transition(
        self, probe: str, upstreams: Sequence[str], now: datetime, decide: Decide, channels: Sequence[str]
    ) -> list[Event]: ...

    def incident_states(self) -> dict[str, IncidentState]: ...

    def incidents(self, *, open_only: bool, limit: int) -> list[IncidentRecord]: ...

    def claim_next(self, now: datetime, owner: str, lease_s: float) -> OutboxItem | None: ...

    def thread_ref(self, incident_id: str, channel: str) -> str | None: ...

    def mark_sent(self, item: OutboxItem, now: datetime, thread: str | None) -> None: ...

    def mark_retry(self, item: OutboxItem, next_attempt_at: datetime, error: str) -> None: ...

    def mark_failed(self, item: OutboxItem, now: datetime, error: str) -> None: ...

    def outbox_pending(self) -> dict[str, int]: ...


class SilenceStore(Protocol):
    """Stored silences: what ``synthmon silence`` and the incident sink need."""

    def add_silence(
        self, *, probe: str, starts_at: datetime, ends_at: datetime, reason: str, created_by: str
    ) -> Silence: ...

    def silences(self, *, active_at: datetime | None) -> list[Silence]: ...

    def clear_silences(self, *, now: datetime, silence_id: int | None, probe: str | None) -> int: ...
