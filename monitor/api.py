"""HTTP routes over the store: ``/api/v1/runs``, ``/api/v1/status``, ``/api/v1/incidents`` and ``/``.

The core server mounts these as extra routes. The status page and ``/api/v1/status`` show the same
:class:`monitor.statuspage.Snapshot`; incidents reach it through one adapter,
:func:`open_incidents`, the only place that knows how the alerting store shapes them.

Store calls cross to the store's threads and are bounded by ``timeout_s``; a store failure, a slow
store or a store not opened yet answers 503 with a short JSON error (never the database URL); the
page answers 503 too, with a page that says so. ``GET /api/v1/store`` says whether the store is
ready and how many results wait in memory for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from monitor.alerting.correlation import summarize
from monitor.alerting.incidents import IncidentState, Phase
from monitor.alerting.store import IncidentRecord, IncidentStore
from monitor.baselines.view import LatencyView, latency_json
from monitor.history.base import HistoryStore, RunMark, UptimeRow
from monitor.location import DEFAULT_LOCATION
from monitor.locations_view import LOOKBACK_S, LocationsSnapshot, locations_json
from monitor.locations_view import build as build_locations
from monitor.results import ProbeResult
from monitor.statuspage import (
    BAR_RUNS,
    UPTIME_WINDOWS,
    Cell,
    Failure,
    Member,
    OpenIncident,
    Snapshot,
    failure_of,
    newest_failing,
    probe_card,
    render,
    render_unavailable,
)
from monitor.store.engine import RunInThread
from monitor.store.migrate import StoreGate
from probes.base import Clock, DurationError, format_duration, parse_duration

MAX_LIMIT = 1000
#: The longest look-back a query may ask for (longer than any retention; bounds the date arithmetic).
MAX_SINCE_S = 3660 * 86400.0


class BadParam(ValueError):
    """A query parameter the client got wrong: answered 400 with this message."""


def duration_param(params: Mapping[str, str], name: str, default: str) -> float:
    """Query parameter ``name`` as seconds (the config's duration grammar), within bounds."""
    raw = params.get(name, default)
    try:
        seconds = parse_duration(raw)
    except DurationError as exc:
        raise BadParam(f"{name}: {exc}") from None
    if not 0 < seconds <= MAX_SINCE_S:
        raise BadParam(f"{name}: must be more than 0 and at most {format_duration(MAX_SINCE_S)}, got {raw!r}")
    return seconds


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as an integer between ``low`` and ``high``."""
    raw = params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not low <= int(raw) <= high:
        raise BadParam(f"{name}: must be a whole number from {low} to {high}, got {raw[:40]!r}")
    return int(raw)


#: Open incident rows read for the page (one row per probe and incident).
OPEN_INCIDENTS_SHOWN = 200

#: Seconds between background status reads (:meth:`StatusApi.warm`): less than the time after which
#: kept settled hours are due to be read again, so no request finds them expired.
WARM_EVERY_S = 15.0

_EPOCH = datetime.fromtimestamp(0, UTC)


class StoreNotReady(Exception):
    """The store has not been opened yet (the daemon keeps retrying)."""


@dataclass(frozen=True, slots=True)
class _Reads:
    """What one status read brings back from the store thread."""

    recent: dict[str, list[RunMark]]
    full: dict[str, ProbeResult]
    uptime: dict[str, dict[str, UptimeRow]]
    states: dict[str, IncidentState]
    records: list[IncidentRecord]
    locations: LocationsSnapshot
    sections: list[str]


def _with_latest_cause(state: IncidentState, failure: Failure | None) -> IncidentState:
    """A member's state with the diagnosis of its latest failing run when the state has none (states
    stored before they kept the cause)."""
    if state.cause or failure is None or not failure.cause:
        return state
    return replace(state, cause=failure.cause, step=state.step or failure.step)


def open_incidents(
    records: Sequence[IncidentRecord],
    states: Mapping[str, IncidentState],
    latest: Mapping[str, ProbeResult],
    dependencies: Mapping[str, Sequence[str]] | None = None,
) -> list[OpenIncident]:
    """The open incidents as the page shows them: the one place that reads the alerting store's
    shapes (incident rows, one per probe and incident; per-probe state machine states).

    Members are the probes with an open row or an open state under one incident id, each with the
    step its latest run fails at. The root cause is the one the Slack thread names
    (:func:`monitor.alerting.correlation.summarize`: the specific cause most failing members share,
    else the member furthest upstream), shown with that member's latest failure; else the first
    diagnosed member's, else the first failure at all. Since is the earliest opening. Newest first.
    """
    owners: dict[str, str] = {}
    since: dict[str, datetime] = {}
    members: dict[str, set[str]] = {}

    def add(incident_id: str, probe: str, owner: str | None, opened: datetime | None) -> None:
        members.setdefault(incident_id, set()).add(probe)
        owners.setdefault(incident_id, owner or probe)
        if opened is not None:
            since[incident_id] = min(since.get(incident_id, opened), opened)

    for record in records:
        if record.resolved_at is None:
            add(record.incident_id, record.probe, record.incident_probe, record.opened_at)
    for probe, state in states.items():
        if state.phase is Phase.OPEN and state.incident_id:
            add(state.incident_id, probe, state.incident_probe, state.opened_at or state.since)

    def latest_failure(probe: str) -> Failure | None:
        run = latest.get(probe)
        return failure_of(run) if run else None

    out = []
    for incident_id, probes in members.items():
        owner = owners[incident_id]
        ordered = sorted(probes, key=lambda p: (p != owner, p))
        open_states = [
            _with_latest_cause(s, latest_failure(p))
            for p in ordered
            if (s := states.get(p)) is not None and s.incident_id == incident_id
        ]
        summary = summarize(
            incident_id,
            [s for s in open_states if s.phase is Phase.OPEN],
            [r for r in records if r.incident_id == incident_id],
            dependencies or {},
            fallback_since=since.get(incident_id, _EPOCH),
        )
        named = summary.root_probe if summary.root_probe in probes else owner
        failures = {p: latest_failure(p) for p in {owner, named, *ordered}}
        candidates = [failures[named], failures[owner], *(failures[p] for p in ordered)]
        root = next((f for f in candidates if f is not None and f.cause), None)
        root = root or next((f for f in candidates if f is not None), None)
        out.append(
            OpenIncident(
                incident_id=incident_id,
                since=since.get(incident_id) or min((f.at for f in candidates if f), default=_EPOCH),
                members=tuple(Member(p, f.step if (f := failures[p]) else None) for p in ordered),
                root=root,
            )
        )
    return sorted(out, key=lambda i: i.since, reverse=True)


def _failure_json(f: Failure | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {
        "probe": f.probe,
        "step": f.step,
        "at": f.at.isoformat(),
        "status": f.status,
        "http_status": f.http_status,
        "error_class": f.error_class,
        "message": f.message,
        "cause": f.cause,
        "title": f.title,
        "hint": f.hint,
        "action": f.action,
    }


def _cells_json(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    return [
        {"at": c.at.isoformat(), "status": c.status, "duration_s": round(c.duration_s, 6), "detail": c.detail}
        for c in cells
        if c.at is not None
    ]


def status_json(snapshot: Snapshot) -> dict[str, Any]:
    """The ``/api/v1/status`` body. Fields are only ever added: ``probe``, ``status``,
    ``last_run_at``, ``failing_step``, ``http_status``, ``incident`` and ``uptime_24h`` keep their
    meaning; recent runs are oldest first, as on the page."""
    probes = []
    for p in snapshot.probes:
        failing = p.failing
        probes.append(
            {
                "probe": p.name,
                "status": p.status,
                "last_run_at": p.last_run_at.isoformat() if p.last_run_at else None,
                "failing_step": failing.step if failing else None,
                "http_status": failing.http_status if failing else None,
                "incident": p.incident_id,
                **{f"uptime_{label}": p.uptime.get(label) for label in UPTIME_WINDOWS},
                "duration_s": p.duration_s,
                "interval_s": p.interval_s,
                "stale": p.stale,
                "failure": _failure_json(failing),
                "last_failure": _failure_json(p.last_failure),
                "latency": latency_json(snapshot.latency, p.name),
                "recent": _cells_json(p.bar),
                "steps": [
                    {
                        "name": s.name,
                        "status": s.status,
                        "recent": [c.status for c in s.bar if c.at is not None],
                    }
                    for s in p.steps
                ],
            }
        )
    incidents = [
        {
            "incident_id": i.incident_id,
            "since": i.since.isoformat(),
            "title": i.title,
            "members": [{"probe": m.probe, "step": m.step} for m in i.members],
            "root_cause": _failure_json(i.root),
        }
        for i in snapshot.incidents
    ]
    return {
        "environment": snapshot.environment,
        "as_of": snapshot.now.isoformat(),
        "probes": probes,
        "incidents": incidents,
    }


class StatusApi:
    """Route handlers bound to a store and a clock.

    ``run`` crosses to the store's threads (default ``asyncio.to_thread``); ``gate`` tells whether
    the store is open; ``store_status()`` adds details (buffer depths, masked URL) to
    ``/api/v1/store``; ``renew(now)`` reads again the history's kept sums that are due (see
    :meth:`warm`).
    """

    def __init__(
        self,
        history: HistoryStore,
        incidents: IncidentStore,
        clock: Clock,
        *,
        environment: str = "",
        location: str = DEFAULT_LOCATION,
        run: RunInThread | None = None,
        gate: StoreGate | None = None,
        store_status: Callable[[], dict[str, Any]] | None = None,
        timeout_s: float = 10.0,
        dependencies: Mapping[str, Sequence[str]] | None = None,
        latency: Callable[[], LatencyView] | None = None,
        sections: Sequence[Callable[[datetime], str]] = (),
        renew: Callable[[datetime], Any] | None = None,
    ) -> None:
        self._deps = dict(dependencies or {})
        self._renew = renew
        self._probes: list[str] = []  # the probes of the last status read (for keep_warm)
        #: The background read under way (:meth:`warm`): a request waits for it, not reads beside it.
        self._warming: asyncio.Future[Any] | None = None
        self._latency = latency
        self._location = location
        #: Other features' page sections: blocking, read on the store thread with the rest.
        self._sections = list(sections)
        self._history = history
        self._incidents = incidents
        self._clock = clock
        self._env = environment
        self._run: RunInThread = run or asyncio.to_thread
        self._gate = gate
        self._store_status = store_status
        self._timeout_s = timeout_s

    async def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        if self._gate is not None and not self._gate.ready:
            raise StoreNotReady()
        # A hung database must not hold HTTP requests for ever: answer 503 after timeout_s.
        return await asyncio.wait_for(self._run(functools.partial(fn, **kwargs)), self._timeout_s)

    async def store(self, request: Request) -> Response:
        """``GET /api/v1/store``: 200 when the store is open, else 503; details either way."""
        details = self._store_status() if self._store_status is not None else {}
        ready = self._gate.ready if self._gate is not None else True
        return JSONResponse({"ready": ready, **details}, status_code=200 if ready else 503)

    async def runs(self, request: Request) -> Response:
        """``GET /api/v1/runs?probe=&since=24h&limit=100``: runs, newest first."""
        try:
            since = duration_param(request.query_params, "since", "24h")
            limit = int_param(request.query_params, "limit", 100, 1, MAX_LIMIT)
        except BadParam as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            runs = await self._call(
                self._history.runs,
                probe=request.query_params.get("probe"),
                since=self._clock.now() - timedelta(seconds=since),
                limit=limit,
            )
        except Exception as exc:
            return self._unavailable(exc)
        return JSONResponse({"runs": [r.to_dict() for r in runs]})

    async def incidents(self, request: Request) -> Response:
        """``GET /api/v1/incidents?open=1&limit=50``: incidents, newest first."""
        open_only = request.query_params.get("open", "0") in ("1", "true", "yes")
        try:
            rows = await self._call(self._incidents.incidents, open_only=open_only, limit=200)
        except Exception as exc:
            return self._unavailable(exc)
        return JSONResponse(
            {
                "incidents": [
                    {
                        "incident_id": r.incident_id,
                        "probe": r.probe,
                        "thread_probe": r.incident_probe,
                        "opened_at": r.opened_at.isoformat(),
                        "resolved_at": r.resolved_at.isoformat() if r.resolved_at else None,
                        "summary": r.summary,
                    }
                    for r in rows
                ]
            }
        )

    def _read(self, now: datetime) -> _Reads:
        """Every store read the page and ``/api/v1/status`` need, in one crossing to the store thread:
        a handful of indexed queries whatever the history kept (see the history store's methods)."""
        recent = self._history.recent_runs(per_probe=BAR_RUNS)
        names = sorted(recent)
        # Decoded in full: each probe's newest run and newest failing one (messages, diagnoses).
        shown = {m.run_id for marks in recent.values() for m in (marks[0], newest_failing(marks)) if m}
        full = self._history.runs_by_id(sorted(shown))
        self._probes = names
        uptime = self._uptime(names, now)
        states = self._incidents.incident_states()
        records = self._incidents.incidents(open_only=True, limit=OPEN_INCIDENTS_SHOWN)
        # The page shows each location's incident view only: one small read (runs per location
        # and heartbeats are for /api/v1/locations).
        views = build_locations(now, self._location, [], self._incidents.location_views(), None)
        sections = [section(now) for section in self._sections]
        return _Reads(recent, full, uptime, states, records, views, sections)

    def _read_locations(self, now: datetime) -> LocationsSnapshot:
        """Each probe as each location sees it (history's newest runs, alerting's views), and the
        live locations."""
        runs = self._history.latest_by_location(since=now - timedelta(seconds=LOOKBACK_S))
        views = self._incidents.location_views()
        return build_locations(now, self._location, runs, views, self._incidents.location_heartbeats())

    async def locations(self, request: Request) -> Response:
        """``GET /api/v1/locations``: the live locations and each probe's state from each of them."""
        try:
            snap = await self._call(self._read_locations, now=self._clock.now())
        except Exception as exc:
            return self._unavailable(exc)
        return JSONResponse(locations_json(snap))

    def _uptime(self, names: list[str], now: datetime) -> dict[str, dict[str, UptimeRow]]:
        windows = {label: now - timedelta(seconds=seconds) for label, seconds in UPTIME_WINDOWS.items()}
        return self._history.probe_uptime(probes=names, windows=windows, until=now, now=now)

    def _warm_read(self, now: datetime) -> None:
        for _ in range(2):  # the 2nd compiles what a request runs when it finds settled hours kept
            self._read(now)

    def _keep_warm_read(self, now: datetime) -> None:
        if self._renew is not None:
            self._renew(now)
        if not self._probes:  # no status read yet (the store opened late): the whole read
            self._warm_read(now)
        else:  # a new hour's settled ranges, if the hour just turned
            self._uptime(self._probes, now)

    async def warm(self) -> None:
        """Read what a status request reads, on the store thread, and drop it (start-up): the first
        request finds statements compiled, settled hours kept and database pages cached. A request
        arriving meanwhile waits for it rather than make the same cold read beside it."""
        if self._gate is None or self._gate.ready:
            now = self._clock.now()
            warming = self._warming = asyncio.ensure_future(self._call(self._warm_read, now=now))
            await warming

    async def keep_warm(self) -> None:
        """Every :data:`WARM_EVERY_S`: renew kept settled hours before they expire and read a new
        hour's ranges before a request needs them (the uptime read only: cheap at any probe count).
        No request waits for it: what it renews is still fresh meanwhile.

        A warm read that fails leaves the cache as it was. A store failing meanwhile (a deleted
        file, a lost connection) fails it like every housekeeping job: one warning line from the
        scheduler (its known errors), while the gate and the writers report the store and a status
        request answers 503; any other failure is a bug and keeps its traceback."""
        if self._gate is None or self._gate.ready:
            with contextlib.suppress(StoreNotReady):  # the gate closed since its check: it retries itself
                await self._call(self._keep_warm_read, now=self._clock.now())

    async def _snapshot(self) -> Snapshot:
        warming = self._warming
        if warming is not None and not warming.done():
            await asyncio.wait({warming}, timeout=self._timeout_s)
        now = self._clock.now()
        reads: _Reads = await self._call(self._read, now=now)
        latest = {
            p: reads.full[m[0].run_id] for p, m in reads.recent.items() if m and m[0].run_id in reads.full
        }
        incidents = open_incidents(reads.records, reads.states, latest, self._deps)
        open_ids = {m.probe: i.incident_id for i in reversed(incidents) for m in i.members}
        cards = tuple(
            probe_card(
                name,
                reads.recent.get(name, []),
                reads.full,
                {
                    label: (rows[name].uptime if name in rows else None)
                    for label, rows in reads.uptime.items()
                },
                now=now,
                incident_id=open_ids.get(name),
            )
            # Pseudo-probes (an SLO's burn, ``slo:auth``) have incidents but no runs: not a card.
            for name in sorted(set(reads.recent) | set(reads.states))
            if ":" not in name
        )
        latency = self._latency() if self._latency is not None else {}
        return Snapshot(
            environment=self._env,
            now=now,
            probes=cards,
            incidents=tuple(incidents),
            locations=reads.locations,
            latency=latency,
            sections=tuple(s for s in reads.sections if s),
        )

    async def status(self, request: Request) -> Response:
        """``GET /api/v1/status``: per probe the last run, its steps and recent runs, the open incident
        and the uptime over 24 h / 7 d / 30 d; the open incidents with their root cause."""
        try:
            snapshot = await self._snapshot()
        except Exception as exc:
            return self._unavailable(exc)
        return JSONResponse(status_json(snapshot))

    async def page(self, request: Request) -> Response:
        """``GET /``: the status page (server-rendered HTML, reloads itself); 503 with a page that says
        why when the store cannot be read."""
        try:
            snapshot = await self._snapshot()
        except Exception as exc:
            reason = (
                "the store is not open yet (synthmon keeps retrying)"
                if isinstance(exc, StoreNotReady)
                else f"the store did not answer ({type(exc).__name__})"
            )
            return HTMLResponse(render_unavailable(self._env, self._clock.now(), reason), status_code=503)
        return HTMLResponse(render(snapshot))

    @staticmethod
    def _unavailable(exc: BaseException) -> Response:
        if isinstance(exc, StoreNotReady):
            return JSONResponse({"error": "store not ready (synthmon keeps retrying)"}, status_code=503)
        return JSONResponse({"error": f"store unavailable ({type(exc).__name__})"}, status_code=503)

    def routes(self) -> list[BaseRoute]:
        """The routes to mount in the core server."""
        return [
            Route("/api/v1/store", self.store, methods=["GET"]),
            Route("/api/v1/runs", self.runs, methods=["GET"]),
            Route("/api/v1/status", self.status, methods=["GET"]),
            Route("/api/v1/incidents", self.incidents, methods=["GET"]),
            Route("/api/v1/locations", self.locations, methods=["GET"]),
            Route("/", self.page, methods=["GET"]),
        ]
