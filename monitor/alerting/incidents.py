"""The incident state machine: a pure function ``(state, result, rule, now) -> (state, events)``.

One :class:`IncidentState` per probe. Rules (see README, "Incident rules"):

- a run is *bad* (FAIL; a DEGRADED run that is a latency regression, unless the rule turns
  ``alert_on_latency_regression`` off; DEGRADED or ERROR otherwise only when the rule says so),
  *good* (PASS, DEGRADED by default) or *neutral* (ERROR by default, a fully SKIPPED run): neutral
  runs change no counter, because "the monitor could not check" is neither an outage nor a recovery;
- ``failure_threshold`` consecutive bad runs open an incident, ``success_threshold`` consecutive
  good runs resolve it; a good run while counting failures resets the count (flapping never pages);
- while open, a change of the failing step / error class / HTTP status / diagnosis emits ``updated``,
  and ``reminder_interval`` after the last notification a bad run emits ``reminder``;
- dependency suppression: when the probe would open while an upstream probe (``depends_on``) has an
  open incident, it *joins* that incident (event ``joined``, sent into the upstream's thread). If the
  upstream resolves while the probe still fails, the probe opens an incident of its own. An upstream
  incident that is itself held by a silence (open, not announced: it has no thread yet) holds its
  dependents too: they join it silently and send ``joined`` once the upstream has been announced;
- silences hold notifications, never state: an incident opened during a silence is announced when
  the silence ends (if still open); its resolution is sent only if its opening was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from monitor.alerting.base import Event, EventKind
from monitor.alerting.config import IncidentRule
from monitor.diagnosis import LATENCY_REGRESSION, cause_title
from monitor.results import ProbeResult
from probes.base import Status, StepResult

#: Longest message excerpt carried by an event (the full text is in history). Longer than any channel
#: shows, so a channel that has to shorten it cuts at a word boundary of its own choosing.
MESSAGE_CHARS = 4000


class Phase(StrEnum):
    """Whether a probe has an open incident."""

    OK = "ok"
    OPEN = "open"


class Verdict(StrEnum):
    """How one run counts under a rule."""

    GOOD = "good"
    BAD = "bad"
    NEUTRAL = "neutral"


@dataclass(frozen=True, slots=True)
class Upstream:
    """An open incident of a probe this probe depends on.

    ``held``: the upstream incident has not been announced (a silence holds it), so it has no
    thread to post into yet.
    """

    probe: str
    incident_id: str
    held: bool = False


@dataclass(frozen=True, slots=True)
class IncidentState:
    """Everything the state machine remembers about one probe between runs (persisted as JSON)."""

    probe: str
    phase: Phase = Phase.OK
    failures: int = 0
    successes: int = 0
    incident_id: str | None = None
    incident_probe: str | None = None
    since: datetime | None = None
    opened_at: datetime | None = None
    notified: bool = False
    last_notified_at: datetime | None = None
    signature: str | None = None
    worst_status: str | None = None
    last_good_status: str = Status.PASS.value
    last_status: str | None = None
    last_run_id: str | None = None
    seq: int = 0
    #: What the last bad run showed (failing step and its diagnosis): what incident summaries,
    #: correlation by cause and the thread root are built from.
    step: str | None = None
    http_status: int | None = None
    cause: str | None = None
    hint: str | None = None
    action: str | None = None
    #: The locations that have seen the open incident fail (several locations only; see
    #: :mod:`monitor.alerting.quorum`).
    locations: tuple[str, ...] = ()

    @property
    def joined(self) -> bool:
        """True when this probe's failure is part of an upstream probe's incident."""
        return self.phase is Phase.OPEN and self.incident_probe not in (None, self.probe)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the store."""
        d = asdict(self)
        d["phase"] = self.phase.value
        return times_to_json(d, _STATE_TIMES)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IncidentState:
        """The inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = known_fields(cls, d, _STATE_TIMES)
        known["phase"] = Phase(known.get("phase", Phase.OK.value))
        known["locations"] = tuple(known.get("locations") or ())
        return cls(**known)


#: The datetime fields of :class:`IncidentState`, stored as ISO text.
_STATE_TIMES = ("since", "opened_at", "last_notified_at")


def times_to_json(d: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """``d`` (a dataclass's ``asdict``) with the datetimes under ``keys`` as ISO text: the stored form
    of the alerting states (this one's and the per-location views')."""
    for key in keys:
        value = d[key]
        d[key] = value.isoformat() if value is not None else None
    return d


def known_fields(cls: Any, d: Mapping[str, Any], times: Sequence[str]) -> dict[str, Any]:
    """The keys of stored ``d`` that are fields of dataclass ``cls`` (unknown keys ignored: a newer
    synthmon may have written more), the datetimes under ``times`` parsed back."""
    known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
    for key in times:
        if known.get(key) is not None:
            known[key] = datetime.fromisoformat(str(known[key]))
    return known


def is_latency_regression(result: ProbeResult) -> bool:
    """True when a step of ``result`` is DEGRADED as a latency regression (see monitor.baselines)."""
    return any(
        s.status is Status.DEGRADED and s.diagnosis is not None and s.diagnosis.cause == LATENCY_REGRESSION
        for s in result.steps
    )


def verdict(result: ProbeResult, rule: IncidentRule) -> Verdict:
    """How ``result`` counts under ``rule`` (by its status; a DEGRADED run that is a latency
    regression counts as bad unless the rule turns ``alert_on_latency_regression`` off)."""
    status = result.status
    if status is Status.FAIL:
        return Verdict.BAD
    if status is Status.DEGRADED:
        if rule.alert_on_degraded or (rule.alert_on_latency_regression and is_latency_regression(result)):
            return Verdict.BAD
        return Verdict.GOOD
    if status is Status.ERROR:
        return Verdict.BAD if rule.alert_on_error else Verdict.NEUTRAL
    if status is Status.PASS:
        return Verdict.GOOD
    return Verdict.NEUTRAL


def signature(result: ProbeResult) -> str:
    """What identifies "the same failure": failing step, error class, HTTP status, diagnosis cause."""
    step = result.failing_step
    if step is None:
        # DEGRADED counted as bad: the slow step is the first degraded one.
        step = next((s for s in result.steps if s.status is Status.DEGRADED), None)
    if step is None:
        return f"{result.status.value}"
    cause = step.diagnosis.cause if step.diagnosis else ""
    return f"{step.name}|{step.error_class or ''}|{step.http_status or ''}|{cause}"


def failing_step(result: ProbeResult) -> StepResult | None:
    """The step a bad run is judged by: the failing one, else (DEGRADED counted as bad) the slow one."""
    step = result.failing_step
    if step is None:
        step = next((s for s in result.steps if s.status is Status.DEGRADED), None)
    return step


def _facts(state: IncidentState, result: ProbeResult) -> IncidentState:
    """``state`` remembering what a bad ``result`` showed (step, HTTP status, diagnosis)."""
    step = failing_step(result)
    diagnosis = step.diagnosis if step is not None else None
    return replace(
        state,
        step=step.name if step is not None else None,
        http_status=step.http_status if step is not None else None,
        cause=diagnosis.cause if diagnosis else None,
        hint=diagnosis.hint if diagnosis else None,
        action=(diagnosis.action or None) if diagnosis else None,
    )


def _event(kind: EventKind, state: IncidentState, result: ProbeResult, now: datetime) -> Event:
    step = result.failing_step
    if step is None and kind is not EventKind.RESOLVED:
        step = next((s for s in result.steps if s.status is Status.DEGRADED), None)
    diagnosis = step.diagnosis if step is not None else None
    # Invariant: only called once the incident has its thread (see _announce).
    assert state.incident_id is not None
    assert state.incident_probe is not None
    if kind is EventKind.RESOLVED:
        old, new = state.worst_status or Status.FAIL.value, result.status.value
    elif kind is EventKind.OPENED or kind is EventKind.JOINED:
        old, new = state.last_good_status, result.status.value
    else:
        old, new = state.worst_status or result.status.value, result.status.value
    cause = diagnosis.cause if diagnosis else None
    if kind is EventKind.RESOLVED:
        # A resolution names the failure it ends: the last bad run's cause.
        cause = state.cause
    return Event(
        kind=kind,
        probe=state.probe,
        incident_id=state.incident_id,
        incident_probe=state.incident_probe,
        environment=result.environment,
        at=now,
        since=state.since or result.started_at,
        run_id=result.run_id,
        old_status=old,
        new_status=new,
        step=step.name if step is not None else None,
        http_status=step.http_status if step is not None else None,
        error_class=step.error_class if step is not None else None,
        message=(step.message[:MESSAGE_CHARS] if step is not None else ""),
        cause=diagnosis.cause if diagnosis else None,
        hint=diagnosis.hint if diagnosis else None,
        action=(diagnosis.action or None) if diagnosis else None,
        seq=state.seq + 1,
        title=(diagnosis.title if diagnosis else "") or (cause_title(cause) if cause else None),
    )


def _worse(a: str | None, b: str) -> str:
    order = {Status.FAIL.value: 3, Status.ERROR.value: 2, Status.DEGRADED.value: 1}
    if a is None:
        return b
    return a if order.get(a, 0) >= order.get(b, 0) else b


def _announce(
    state: IncidentState, result: ProbeResult, now: datetime, upstream: Upstream | None
) -> tuple[IncidentState, Event]:
    """Give the open incident its thread (own or upstream's) and the opening/joining event."""
    if upstream is not None:
        state = replace(state, incident_id=upstream.incident_id, incident_probe=upstream.probe)
        kind = EventKind.JOINED
    else:
        # Keep the id an incident got while its announcement was held by a silence.
        own = state.incident_id if state.incident_probe == state.probe else None
        state = replace(
            state, incident_id=own or f"{state.probe}-{result.run_id}", incident_probe=state.probe
        )
        kind = EventKind.OPENED
    event = _event(kind, state, result, now)
    return replace(state, notified=True, last_notified_at=now, seq=event.seq), event


def transition(
    state: IncidentState,
    result: ProbeResult,
    rule: IncidentRule,
    now: datetime,
    *,
    upstream: Upstream | None = None,
    silenced: bool = False,
    judged: Verdict | None = None,
) -> tuple[IncidentState, list[Event]]:
    """The next state of ``state`` after ``result``, and the events to notify (possibly none).

    ``upstream`` is an open incident of a probe this one depends on (None when there is none);
    ``silenced`` says a maintenance window or a stored silence covers this probe at ``now``;
    ``judged`` overrides how the run counts (the quorum across locations, see
    :mod:`monitor.alerting.quorum`); None: as ``rule`` judges its status.
    """
    v = judged if judged is not None else verdict(result, rule)
    base = replace(state, last_status=result.status.value, last_run_id=result.run_id)
    if v is Verdict.NEUTRAL:
        return base, []
    if base.phase is Phase.OK:
        return _from_ok(base, result, rule, now, v, upstream, silenced)
    return _from_open(base, result, rule, now, v, upstream, silenced)


def _from_ok(
    state: IncidentState,
    result: ProbeResult,
    rule: IncidentRule,
    now: datetime,
    v: Verdict,
    upstream: Upstream | None,
    silenced: bool,
) -> tuple[IncidentState, list[Event]]:
    if v is Verdict.GOOD:
        return replace(state, failures=0, since=None, last_good_status=result.status.value), []
    state = _facts(
        replace(state, failures=state.failures + 1, since=state.since or result.started_at), result
    )
    if state.failures < rule.failure_threshold:
        return state, []
    # Threshold crossed: the incident exists from now on, whether or not anyone may be told yet.
    state = replace(
        state,
        phase=Phase.OPEN,
        successes=0,
        opened_at=now,
        signature=signature(result),
        worst_status=result.status.value,
        notified=False,
        incident_id=None,
        incident_probe=None,
        seq=0,
    )
    if silenced:
        # Held: no thread yet. A provisional id keeps the open incident addressable in the store.
        return replace(state, incident_id=f"{state.probe}-{result.run_id}", incident_probe=state.probe), []
    if upstream is not None and upstream.held:
        return _hold_with(state, upstream), []
    state, event = _announce(state, result, now, upstream)
    return state, [event]


def _hold_with(state: IncidentState, upstream: Upstream) -> IncidentState:
    """Join ``upstream``'s held (unannounced) incident silently: no thread exists to post into yet."""
    return replace(state, incident_id=upstream.incident_id, incident_probe=upstream.probe, notified=False)


def _from_open(
    state: IncidentState,
    result: ProbeResult,
    rule: IncidentRule,
    now: datetime,
    v: Verdict,
    upstream: Upstream | None,
    silenced: bool,
) -> tuple[IncidentState, list[Event]]:
    if v is Verdict.GOOD:
        state = replace(state, successes=state.successes + 1)
        if state.successes < rule.success_threshold:
            return state, []
        events: list[Event] = []
        # A resolution closes a thread someone saw, even inside a maintenance window; an incident
        # that was never announced resolves silently.
        if state.notified:
            events.append(_event(EventKind.RESOLVED, state, result, now))
        closed = IncidentState(
            probe=state.probe,
            last_good_status=result.status.value,
            last_status=state.last_status,
            last_run_id=state.last_run_id,
        )
        return closed, events

    new_sig = signature(result)
    changed = new_sig != state.signature
    state = _facts(
        replace(
            state,
            successes=0,
            signature=new_sig,
            worst_status=_worse(state.worst_status, result.status.value),
        ),
        result,
    )
    if silenced:
        return state, []
    if upstream is not None and upstream.held and (not state.notified or state.joined):
        # Our upstream's incident is held by a silence: so are we (an own, announced incident of
        # ours keeps its thread, though).
        if state.notified and upstream.incident_id == state.incident_id:
            return state, []
        return _hold_with(state, upstream), []
    if not state.notified:
        state, event = _announce(state, result, now, upstream)
        return state, [event]
    if state.joined and (upstream is None or upstream.incident_id != state.incident_id):
        # The upstream incident we joined is over but we still fail: this is our own outage now.
        state = replace(
            state,
            incident_id=None,
            incident_probe=None,
            since=result.started_at,
            opened_at=now,
            worst_status=result.status.value,
        )
        state, event = _announce(state, result, now, upstream)
        return state, [event]
    kind: EventKind | None = None
    if changed:
        kind = EventKind.UPDATED
    elif (
        rule.reminder_interval > 0
        and state.last_notified_at is not None
        and now - state.last_notified_at >= timedelta(seconds=rule.reminder_interval)
    ):
        kind = EventKind.REMINDER
    if kind is None:
        return state, []
    event = _event(kind, state, result, now)
    return replace(state, last_notified_at=now, seq=event.seq), [event]
