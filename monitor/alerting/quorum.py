"""Quorum across locations, pure: one zone's network blip never pages, a platform outage does.

Replicas in several locations (:mod:`monitor.location`) probe the same platform and share one
store. Each location keeps its own *view* of each probe (:class:`LocationView`: is it failing from
here, since when, why). The probe's one shared incident state machine
(:mod:`monitor.alerting.incidents`) is fed each run's verdict *gated* by the quorum
(:func:`gate`):

- a bad run counts only while at least ``required`` locations are failing (each with a bad run
  within ``window``); alone, it is neutral: the failure is visible per location, nothing pages;
- a good run counts only while fewer than ``required`` locations are failing: one location
  recovering while the others still fail does not resolve the incident.

``required`` is ``min(min_locations, live locations probing the probe)`` (:func:`required`): with
one such location it is 1 and the verdict passes through untouched, so a single-location
deployment behaves exactly as without locations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from monitor.alerting.incidents import Verdict, failing_step, known_fields, times_to_json
from monitor.results import ProbeResult

#: How often each daemon tells the store its location is live.
HEARTBEAT_S = 30.0
#: A location not heard from for this long is not live: it no longer counts towards the quorum size.
LIVE_S = 4 * HEARTBEAT_S

_TIMES = ("since", "last_bad_at", "updated_at")


@dataclass(frozen=True, slots=True)
class LocationView:
    """What one location last saw of one probe (persisted as JSON, one row per probe and location).

    ``failing``: the last judged run (bad or good; neutral runs change nothing) from here was bad.
    ``since``: the first bad run of the current streak; ``last_bad_at``: when the last bad run was
    evaluated, which the quorum window is measured from.
    """

    probe: str
    location: str
    failing: bool = False
    failures: int = 0
    since: datetime | None = None
    last_bad_at: datetime | None = None
    last_status: str | None = None
    last_run_id: str | None = None
    step: str | None = None
    cause: str | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the store and the API."""
        return times_to_json(asdict(self), _TIMES)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LocationView:
        """The inverse of :meth:`to_dict`; unknown keys are ignored."""
        return cls(**known_fields(cls, d, _TIMES))


def observe(view: LocationView, result: ProbeResult, judged: Verdict, now: datetime) -> LocationView:
    """``view`` after one run made from its location, judged ``judged`` by the probe's rule."""
    view = replace(view, last_status=result.status.value, last_run_id=result.run_id, updated_at=now)
    if judged is Verdict.GOOD:
        return replace(view, failing=False, failures=0, since=None, step=None, cause=None)
    if judged is Verdict.NEUTRAL:
        return view
    step = failing_step(result)
    return replace(
        view,
        failing=True,
        failures=view.failures + 1,
        since=view.since or result.started_at,
        last_bad_at=now,
        step=step.name if step is not None else None,
        cause=step.diagnosis.cause if step is not None and step.diagnosis else None,
    )


def failing_locations(views: Iterable[LocationView], now: datetime, window_s: float) -> tuple[str, ...]:
    """The locations (sorted) whose view is failing with a bad run within ``window_s`` of ``now``.

    The window also retires a location that stopped reporting while failing (its daemon died).
    """
    window = timedelta(seconds=window_s)
    return tuple(
        sorted(
            v.location
            for v in views
            if v.failing and v.last_bad_at is not None and now - v.last_bad_at <= window
        )
    )


def required(min_locations: int, live: int) -> int:
    """How many failing locations make a failure the platform's: ``min(min_locations, live)``, ≥ 1."""
    return max(1, min(min_locations, live))


def gate(judged: Verdict, failing: Sequence[str], need: int) -> Verdict:
    """The verdict the shared incident state machine sees (see the module docstring)."""
    if need <= 1 or judged is Verdict.NEUTRAL:
        return judged
    if judged is Verdict.BAD:
        return Verdict.BAD if len(failing) >= need else Verdict.NEUTRAL
    return Verdict.GOOD if len(failing) < need else Verdict.NEUTRAL


def seen_from(locations: Sequence[str]) -> str:
    """``seen from eu-west-1a, eu-west-1b``: how messages name the locations of a failure."""
    return "seen from " + ", ".join(locations) if locations else ""
