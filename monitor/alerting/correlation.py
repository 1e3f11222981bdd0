"""One outage, one incident: which open incident a failing probe belongs to, and what it says.

Pure functions over the stored per-probe states (:class:`IncidentState`), used inside the store's
transition transaction, before and after the per-probe state machine
(:func:`monitor.alerting.incidents.transition`):

- :func:`correlate` picks the open incident a failing probe joins instead of paging on its own:
  one holding a probe it depends on (``depends_on``, followed transitively), one holding a probe
  that depends on it (the downstream failed first), or, by cause, one with a member that failed for
  the same specific diagnosed cause within the correlation window. A probe already in a thread
  stays in it while it fails, even after the probe that opened the thread has recovered.
- :func:`conclude` turns the machine's per-probe events into incident events: a member's recovery
  while others still fail is ``recovered`` (a reply), only the last member's is ``resolved``; every
  event carries the :class:`IncidentSummary` the thread root is rendered from.
- :func:`summarize` names the root cause: among the members, the most specific diagnosed cause that
  most of them share, then the one furthest upstream, then the earliest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from monitor.alerting.base import Event, EventKind, IncidentSummary, Member
from monitor.alerting.config import CorrelationConfig
from monitor.alerting.incidents import IncidentState, Phase, Upstream
from monitor.alerting.store import IncidentRecord
from monitor.diagnosis import GENERIC_CAUSES, cause_title

#: ``probe -> its depends_on``, as configured.
Dependencies = Mapping[str, Sequence[str]]


def ancestors(probe: str, deps: Dependencies) -> set[str]:
    """Every probe ``probe`` depends on, directly or through others."""
    seen: set[str] = set()
    todo = list(deps.get(probe, ()))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(deps.get(name, ()))
    return seen


def descendants(probe: str, deps: Dependencies) -> set[str]:
    """Every probe that depends on ``probe``, directly or through others."""
    return {name for name in deps if probe in ancestors(name, deps)}


def specific(cause: str | None) -> bool:
    """True for a cause that says what is broken (not only how a request failed)."""
    return bool(cause) and cause not in GENERIC_CAUSES


def _open_incidents(states: Iterable[IncidentState]) -> dict[str, list[IncidentState]]:
    """Open members by incident id."""
    out: dict[str, list[IncidentState]] = {}
    for state in states:
        if state.phase is Phase.OPEN and state.incident_id:
            out.setdefault(state.incident_id, []).append(state)
    return out


def _target(incident_id: str, members: Sequence[IncidentState]) -> Upstream:
    owner = next((m.incident_probe for m in members if m.incident_probe), members[0].probe)
    # Held: no member has been announced, so the thread does not exist yet (a silence holds it).
    return Upstream(probe=owner, incident_id=incident_id, held=not any(m.notified for m in members))


def correlate(
    state: IncidentState,
    *,
    cause: str | None,
    began: datetime,
    others: Mapping[str, IncidentState],
    deps: Dependencies,
    config: CorrelationConfig,
) -> Upstream | None:
    """The open incident ``state``'s probe belongs to now, or None (its own, or none yet).

    ``cause`` and ``began`` describe the probe's current failure; ``others`` are every other probe's
    states. See the module docstring for the rules; among several candidates the oldest incident wins.
    """
    probe = state.probe
    incidents = _open_incidents(s for name, s in others.items() if name != probe)
    if state.phase is Phase.OPEN and state.incident_id and state.joined:
        members = incidents.get(state.incident_id, [])
        if state.notified:
            # In a thread someone reads: stay in it until this probe recovers.
            return Upstream(probe=state.incident_probe or probe, incident_id=state.incident_id)
        if members:
            return _target(state.incident_id, [*members, state])
    elif state.phase is Phase.OPEN and state.incident_id:
        return None  # its own incident: the state machine keeps it
    up, down = ancestors(probe, deps), descendants(probe, deps)
    candidates: list[tuple[datetime, str]] = []
    for incident_id, members in incidents.items():
        related = any(m.probe in up or m.probe in down for m in members)
        same_cause = (
            config.by_cause
            and specific(cause)
            and any(
                m.cause == cause and abs(((m.since or began) - began).total_seconds()) <= config.window
                for m in members
            )
        )
        if related or same_cause:
            first = min((m.opened_at or m.since or began) for m in members)
            candidates.append((first, incident_id))
    if not candidates:
        return None
    _, chosen = min(candidates)
    return _target(chosen, incidents[chosen])


def _member(state: IncidentState, *, active: bool) -> Member:
    # States stored before they kept the diagnosis still carry it in their signature.
    from_signature = _signature_member(state.probe, state.signature or "")
    return Member(
        probe=state.probe,
        step=state.step or from_signature.step,
        http_status=state.http_status if state.http_status is not None else from_signature.http_status,
        status=state.worst_status or state.last_status,
        cause=state.cause or from_signature.cause,
        active=active,
    )


def _signature_member(probe: str, signature: str) -> Member:
    """What a stored signature (``step|error_class|http_status|cause``) says about a member."""
    step, _, rest = signature.partition("|")
    _, _, rest = rest.partition("|")
    http, _, cause = rest.partition("|")
    return Member(
        probe=probe,
        step=step or None,
        http_status=int(http) if http.isdigit() else None,
        cause=cause or None,
        active=False,
    )


def _from_record(record: IncidentRecord) -> Member:
    return _signature_member(record.probe, record.summary)


def summarize(
    incident_id: str,
    members: Sequence[IncidentState],
    records: Sequence[IncidentRecord],
    deps: Dependencies,
    *,
    fallback_since: datetime,
    resolved: bool = False,
) -> IncidentSummary:
    """The incident as the thread root shows it (see the module docstring for the root cause rule).

    ``members`` are the probes in the incident now (their states after this run), ``records`` every
    probe that was ever part of it (members that recovered earlier are listed as affected).
    """
    active = {m.probe: m for m in members}
    listed = [_member(m, active=not resolved) for m in members]
    listed += [_from_record(r) for r in records if r.incident_id == incident_id and r.probe not in active]
    listed = sorted({m.probe: m for m in listed}.values(), key=lambda m: m.probe)
    pool = [m for m in listed if m.active] or listed
    causes = [m.cause for m in pool]

    def rank(m: Member) -> tuple[int, int, int, int]:
        shared = causes.count(m.cause) if m.cause else 0
        upstream_of = len(descendants(m.probe, deps) & {p.probe for p in pool})
        return (int(specific(m.cause)), shared, int(m.cause is not None), upstream_of)

    root = max(pool, key=rank) if pool else Member(probe=incident_id)
    root_state = active.get(root.probe)
    sinces = [t for t in (m.since or m.opened_at for m in members) if t is not None]
    sinces += [r.opened_at for r in records if r.incident_id == incident_id]
    title = cause_title(root.cause) if root.cause else f"{root.where} failing"
    return IncidentSummary(
        incident_id=incident_id,
        title=title,
        since=min(sinces) if sinces else fallback_since,
        members=tuple(listed),
        root_probe=root.probe,
        root_step=root.step,
        cause=root.cause,
        hint=root_state.hint if root_state is not None else None,
        action=root_state.action if root_state is not None else None,
        resolved=resolved,
        locations=tuple(sorted({loc for m in members for loc in m.locations})),
    )


def conclude(
    events: Sequence[Event],
    new: IncidentState,
    old: IncidentState,
    others: Mapping[str, IncidentState],
    records: Sequence[IncidentRecord],
    deps: Dependencies,
) -> list[Event]:
    """The per-probe ``events`` as incident events, each carrying the incident's summary.

    ``old``/``new`` are this probe's state before and after the run; a resolution while other
    members still fail becomes ``recovered``.
    """
    out = []
    for event in events:
        incident_id = event.incident_id
        members = [
            s
            for name, s in others.items()
            if name != new.probe and s.phase is Phase.OPEN and s.incident_id == incident_id
        ]
        kind = event.kind
        if kind is EventKind.RESOLVED and members:
            kind = EventKind.RECOVERED
        mine = [new] if new.phase is Phase.OPEN and new.incident_id == incident_id else []
        if kind is EventKind.RESOLVED:
            # The last member: list it as affected (its state is closed already).
            mine = [replace(old, incident_id=incident_id)]
        summary = summarize(
            incident_id,
            [*members, *mine],
            records,
            deps,
            fallback_since=event.since,
            resolved=kind is EventKind.RESOLVED,
        )
        if kind is EventKind.RECOVERED:
            summary = replace(
                summary,
                members=tuple(
                    replace(m, active=False) if m.probe == new.probe else m for m in summary.members
                ),
            )
        out.append(replace(event, kind=kind, summary=summary))
    return out
