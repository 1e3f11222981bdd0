"""The alerting contract: incident events, the Notifier interface and its error type.

Exceptions raised by notifiers (one tree, healthchecks-style)::

    TransportError(message, permanent=False)   a send failed; transient ones are retried with backoff,
                                               permanent ones (bad webhook, bad token, unknown
                                               channel) are recorded as failed and never retried

A notifier must not put a secret (webhook URL, token) into the message of a ``TransportError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class EventKind(StrEnum):
    """What happened to an incident."""

    OPENED = "opened"  # a probe crossed its failure threshold: page
    JOINED = "joined"  # a dependent probe failed while its upstream's incident is open: same thread
    UPDATED = "updated"  # still failing, but the failing step or diagnosis changed
    REMINDER = "reminder"  # still failing after reminder_interval
    RECOVERED = "recovered"  # this probe recovered; other members keep the incident open
    RESOLVED = "resolved"  # the last member recovered: the incident is over


@dataclass(frozen=True, slots=True)
class Member:
    """One probe's part in a platform incident: where it fails (or failed) and why."""

    probe: str
    step: str | None = None
    http_status: int | None = None
    status: str | None = None
    cause: str | None = None
    active: bool = True

    @property
    def where(self) -> str:
        """``probe/step`` (``probe`` when no step failed)."""
        return f"{self.probe}/{self.step}" if self.step else self.probe


@dataclass(frozen=True, slots=True)
class IncidentSummary:
    """What the thread root says about the whole incident: the root cause in words, its hint and
    first action, where it shows, since when, and every probe it affected (still or before)."""

    incident_id: str
    title: str
    since: datetime
    members: tuple[Member, ...]
    root_probe: str
    root_step: str | None = None
    cause: str | None = None
    hint: str | None = None
    action: str | None = None
    resolved: bool = False
    #: The locations that see (saw) the failure, when there are several (monitor.location).
    locations: tuple[str, ...] = ()

    @property
    def active(self) -> tuple[Member, ...]:
        """The members still failing."""
        return tuple(m for m in self.members if m.active)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready shape (inside an outbox row's event)."""
        d = asdict(self)
        d["since"] = self.since.isoformat()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IncidentSummary:
        """The inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["since"] = datetime.fromisoformat(str(known["since"]))
        member_fields = Member.__dataclass_fields__
        known["members"] = tuple(
            Member(**{k: v for k, v in m.items() if k in member_fields}) for m in known.get("members", ())
        )
        known["locations"] = tuple(known.get("locations") or ())
        return cls(**known)


@dataclass(frozen=True, slots=True)
class Event:
    """One state change of one probe's incident, as queued in the outbox and rendered by notifiers.

    ``incident_id`` names the thread the event belongs to; for a probe that joined its upstream's
    incident it is the upstream's id and ``incident_probe`` is the upstream probe (the thread owner).
    ``cause`` is the diagnosis's code, ``title`` the same cause in words (what a person reads); a
    resolution carries the title of the failure it ends. Rows queued without a title load with None.
    ``summary`` is the whole incident as it stands after this event (None for rows queued before
    incidents were correlated): notifiers render the thread root from it.
    """

    kind: EventKind
    probe: str
    incident_id: str
    incident_probe: str
    environment: str
    at: datetime
    since: datetime
    run_id: str
    old_status: str
    new_status: str
    step: str | None = None
    http_status: int | None = None
    error_class: str | None = None
    message: str = ""
    cause: str | None = None
    hint: str | None = None
    action: str | None = None
    seq: int = 0
    title: str | None = None
    summary: IncidentSummary | None = None
    #: The locations that see (saw) the failure, when there are several; empty with one location.
    locations: tuple[str, ...] = ()

    @property
    def owns_thread(self) -> bool:
        """True when the event is about the probe whose incident the thread is (not a joined one)."""
        return self.probe == self.incident_probe

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready shape stored in the outbox."""
        d = asdict(self)
        d["kind"] = self.kind.value
        d["at"] = self.at.isoformat()
        d["since"] = self.since.isoformat()
        d["summary"] = self.summary.to_dict() if self.summary is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        """The inverse of :meth:`to_dict`; unknown keys are ignored (forward compatibility)."""
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["kind"] = EventKind(known["kind"])
        known["at"] = datetime.fromisoformat(str(known["at"]))
        known["since"] = datetime.fromisoformat(str(known["since"]))
        if known.get("summary") is not None:
            known["summary"] = IncidentSummary.from_dict(known["summary"])
        known["locations"] = tuple(known.get("locations") or ())
        return cls(**known)


class TransportError(Exception):
    """A notification could not be delivered. ``permanent`` ones are never retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class Notifier(Protocol):
    """One channel (Slack, log, ...). ``send`` is blocking; the dispatcher calls it off the event loop.

    ``thread`` is what this channel returned for the incident's first delivered event (e.g. Slack's
    ``channel:ts``), or None. ``send`` returns the thread reference to remember for later events, or
    None. It raises :class:`TransportError` when the event was not delivered.
    """

    name: str

    def send(self, event: Event, thread: str | None) -> str | None: ...
