"""The alerting store interfaces (owned by their users: the incident sink, the dispatcher, the
silence command, the API) and the rows they exchange.

One implementation (:class:`monitor.alerting.sqlstore.SqlAlertingStore`) serves them on SQLite and
PostgreSQL. Methods are blocking; callers cross to a store thread once per component.

Exceptions: any ``sqlalchemy.exc.SQLAlchemyError`` (the database is unreachable, locked, ...) escapes
these methods; callers that must not fail (the incident sink, the dispatcher) catch it and retry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from monitor.alerting.base import Event
from monitor.alerting.incidents import IncidentState
from monitor.alerting.quorum import LocationView
from monitor.alerting.silences import Silence


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
class IncidentView:
    """What the state machine may look at, read inside the transition's transaction.

    ``others``: every other probe's state (correlation looks across the whole platform);
    ``records``: every probe ever part of an incident that is still open (or of this probe's own).
    ``views``: each location's view of this probe (this location's already updated by the run),
    ``live``: the live locations, this one included (both empty when the transition has no location).
    """

    state: IncidentState
    others: Mapping[str, IncidentState]
    records: Sequence[IncidentRecord]
    silences: Sequence[Silence]
    views: Mapping[str, LocationView] = field(default_factory=dict)
    live: frozenset[str] = frozenset()


#: ``decide(view) -> (new state, events)``: called inside the transaction that stores its outcome.
Decide = Callable[[IncidentView], tuple[IncidentState, list[Event]]]
#: ``observe(view) -> view``: this location's view of the probe after the run (None: its first).
Observe = Callable[[LocationView | None], LocationView]


@dataclass(frozen=True, slots=True)
class Here:
    """The location a transition is made from, and how its run changes that location's view."""

    location: str
    observe: Observe


@dataclass(frozen=True, slots=True)
class Step:
    """One result's transition: ``decide`` on ``probe``'s state at ``now``, made from ``here``."""

    probe: str
    now: datetime
    decide: Decide
    here: Here | None = None


class IncidentStore(Protocol):
    """Incident state and the outbox: what the incident sink and the dispatcher need."""

    def transition(
        self, probe: str, now: datetime, decide: Decide, channels: Sequence[str], here: Here | None = None
    ) -> list[Event]: ...

    def transitions(self, steps: Sequence[Step], channels: Sequence[str]) -> list[list[Event]]: ...

    def heartbeat(self, location: str, now: datetime) -> None: ...

    def location_views(self) -> list[LocationView]: ...

    def location_heartbeats(self) -> dict[str, float]: ...

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
