"""HTTP routes over the store: ``/api/v1/runs``, ``/api/v1/status``, ``/api/v1/incidents`` and ``/``.

The core server mounts these as extra routes. Store calls cross to the store's threads and are
bounded by ``timeout_s``; a store failure, a slow store or a store not opened yet answers 503 with a
short JSON error (never the database URL). ``GET /api/v1/store`` says whether the store is ready
and how many results wait in memory for it.
"""

from __future__ import annotations

import asyncio
import functools
import html
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from monitor.alerting.store import IncidentStore
from monitor.history.base import HistoryStore
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


class StoreNotReady(Exception):
    """The store has not been opened yet (the daemon keeps retrying)."""


class StatusApi:
    """Route handlers bound to a store and a clock.

    ``run`` crosses to the store's threads (default ``asyncio.to_thread``); ``gate`` tells whether
    the store is open; ``store_status()`` adds details (buffer depths, masked URL) to
    ``/api/v1/store``.
    """

    def __init__(
        self,
        history: HistoryStore,
        incidents: IncidentStore,
        clock: Clock,
        *,
        environment: str = "",
        run: RunInThread | None = None,
        gate: StoreGate | None = None,
        store_status: Callable[[], dict[str, Any]] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
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

    async def _status(self) -> list[dict[str, Any]]:
        now = self._clock.now()
        latest = await self._call(self._history.latest_runs)
        states = await self._call(self._incidents.incident_states)
        uptime = await self._call(self._history.uptime, since=now - timedelta(hours=24), until=now, now=now)
        up24 = {u.probe: u.uptime for u in uptime if u.step is None}
        out = []
        for probe in sorted(set(latest) | set(states)):
            run, state = latest.get(probe), states.get(probe)
            step = run.failing_step if run else None
            out.append(
                {
                    "probe": probe,
                    "status": run.status.value if run else None,
                    "last_run_at": run.started_at.isoformat() if run else None,
                    "failing_step": step.name if step else None,
                    "http_status": step.http_status if step else None,
                    "incident": state.incident_id if state and state.phase.value == "open" else None,
                    "uptime_24h": up24.get(probe),
                }
            )
        return out

    async def status(self, request: Request) -> Response:
        """``GET /api/v1/status``: per probe the last run, the open incident and the 24 h uptime."""
        try:
            probes = await self._status()
        except Exception as exc:
            return self._unavailable(exc)
        return JSONResponse({"environment": self._env, "probes": probes})

    async def page(self, request: Request) -> Response:
        """``GET /``: a small HTML status page (no JavaScript, refreshes itself)."""
        try:
            probes = await self._status()
        except Exception as exc:
            return self._unavailable(exc)
        colour = {"PASS": "#2e7d32", "DEGRADED": "#f9a825", "FAIL": "#c62828", "ERROR": "#6a1b9a"}
        rows = "".join(
            (
                "<tr><td>{p}</td><td style='color:{c}'><b>{s}</b></td>"
                "<td>{f}</td><td>{u}</td><td>{i}</td><td>{t}</td></tr>"
            ).format(
                p=html.escape(p["probe"]),
                c=colour.get(p["status"] or "", "#555"),
                s=html.escape(p["status"] or "-"),
                f=html.escape(f"{p['failing_step']} ({p['http_status']})" if p["failing_step"] else ""),
                u=f"{p['uptime_24h'] * 100:.2f}%" if p["uptime_24h"] is not None else "-",
                i=html.escape(p["incident"] or ""),
                t=html.escape(p["last_run_at"] or ""),
            )
            for p in probes
        )
        body = (
            "<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='30'>"
            f"<title>synthmon {html.escape(self._env)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 12px;text-align:left}</style>"
            f"</head><body><h1>synthmon — {html.escape(self._env)}</h1><table>"
            "<tr><th>probe</th><th>status</th><th>failing step</th><th>uptime 24h</th><th>open incident</th>"
            f"<th>last run</th></tr>{rows}</table></body></html>"
        )
        return HTMLResponse(body)

    @staticmethod
    def _unavailable(exc: BaseException) -> Response:
        if isinstance(exc, StoreNotReady):
            return JSONResponse({"error": "store not ready (synthmon keeps retrying)"}, status_code=503)
        return JSONResponse({"error": f"store unavailable ({type(exc).__name__})"}, status_code=503)


def routes(
    history: HistoryStore,
    incidents: IncidentStore,
    clock: Clock,
    *,
    environment: str = "",
    run: RunInThread | None = None,
    gate: StoreGate | None = None,
    store_status: Callable[[], dict[str, Any]] | None = None,
) -> list[BaseRoute]:
    """The routes to mount in the core server."""
    api = StatusApi(
        history, incidents, clock, environment=environment, run=run, gate=gate, store_status=store_status
    )
    return [
        Route("/api/v1/store", api.store, methods=["GET"]),
        Route("/api/v1/runs", api.runs, methods=["GET"]),
        Route("/api/v1/status", api.status, methods=["GET"]),
        Route("/api/v1/incidents", api.incidents, methods=["GET"]),
        Route("/", api.page, methods=["GET"]),
    ]
