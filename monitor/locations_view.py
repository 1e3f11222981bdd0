"""Each probe as each location sees it: ``GET /api/v1/locations``, the status page's "Locations"
table and ``synthmon locations``.

Two sources meet here (which is why this module sits above history and alerting): the newest run
of each probe from each location (history) and each location's incident view (alerting: failing
or not, since when, why; :mod:`monitor.alerting.quorum`), plus the live locations. A failure seen
from one location only shows here (and in the logs and ``synthmon_location_failing``) without
paging; the quorum decides what pages.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.alerting.quorum import LIVE_S, LocationView
from monitor.history.locations import LocationRun
from monitor.store.epoch import from_epoch, to_epoch

#: How far back the newest run per location is looked for (longer than any probe's interval).
LOOKBACK_S = 2 * 3600.0


@dataclass(frozen=True, slots=True)
class LocationCell:
    """One probe from one location: its newest run and whether that location sees it failing."""

    probe: str
    location: str
    status: str | None
    last_run_at: datetime | None
    failing_step: str | None
    failing: bool
    since: datetime | None
    cause: str | None


@dataclass(frozen=True, slots=True)
class Place:
    """One location: when it was last heard from, and whether it is live (counts for the quorum);
    both None when the heartbeats were not read."""

    name: str
    last_seen: datetime | None
    live: bool | None


@dataclass(frozen=True, slots=True)
class LocationsSnapshot:
    """The per-location state of every probe at ``now``; ``here`` is the answering daemon's location."""

    now: datetime
    here: str
    places: tuple[Place, ...]
    cells: tuple[LocationCell, ...]

    @property
    def several(self) -> bool:
        """True when more than one location has reported (a single location needs no table)."""
        return len({c.location for c in self.cells} | {p.name for p in self.places}) > 1


def build(
    now: datetime,
    here: str,
    runs: Sequence[LocationRun],
    views: Sequence[LocationView],
    beats: dict[str, float] | None,
) -> LocationsSnapshot:
    """Merge the newest runs, the incident views and the heartbeats (None: not read) into one
    snapshot."""
    by_key = {(v.probe, v.location): v for v in views}
    run_by_key = {(r.probe, r.location): r for r in runs}
    cells = []
    for probe, location in sorted(set(by_key) | set(run_by_key)):
        run, view = run_by_key.get((probe, location)), by_key.get((probe, location))
        cells.append(
            LocationCell(
                probe=probe,
                location=location,
                status=run.status.value if run is not None else (view.last_status if view else None),
                last_run_at=run.started_at if run is not None else None,
                failing_step=run.failing_step if run is not None else None,
                failing=bool(view and view.failing),
                since=view.since if view and view.failing else None,
                cause=view.cause if view and view.failing else None,
            )
        )
    t = to_epoch(now)
    names = sorted({c.location for c in cells} | set(beats or {}))
    places = tuple(
        Place(name, None, None)
        if beats is None
        else Place(
            name,
            from_epoch(beats[name]) if name in beats else None,
            name in beats and beats[name] >= t - LIVE_S,
        )
        for name in names
    )
    return LocationsSnapshot(now=now, here=here, places=places, cells=tuple(cells))


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def locations_json(snap: LocationsSnapshot) -> dict[str, Any]:
    """The ``/api/v1/locations`` body (and ``synthmon locations --format json``)."""
    return {
        "location": snap.here,
        "locations": [
            {"location": p.name, "last_seen": _iso(p.last_seen), "live": p.live} for p in snap.places
        ],
        "probes": [
            {
                "probe": c.probe,
                "location": c.location,
                "status": c.status,
                "last_run_at": _iso(c.last_run_at),
                "failing_step": c.failing_step,
                "failing": c.failing,
                "since": _iso(c.since),
                "cause": c.cause,
            }
            for c in snap.cells
        ],
    }


def table_rows(snap: LocationsSnapshot) -> tuple[list[str], list[dict[str, str]]]:
    """``synthmon locations``: one row per probe, one column per location (its newest status,
    ``FAILING since`` when that location sees the probe failing)."""
    names = [p.name for p in snap.places]
    rows: dict[str, dict[str, str]] = {}
    for c in snap.cells:
        text = c.status or "-"
        if c.failing:
            text = f"{text} (failing{' at ' + c.failing_step if c.failing_step else ''})"
        rows.setdefault(c.probe, {"probe": c.probe})[c.location] = text
    return ["probe", *names], [rows[p] for p in sorted(rows)]


def render_html(snap: LocationsSnapshot, badge: Callable[[str | None], str]) -> str:
    """The status page's "Locations" table (probes by locations); empty with a single location.

    ``badge`` renders a status the way the rest of the page does.
    """
    if not snap.several:
        return ""
    e = html.escape
    gone = " <span class=muted>(not live)</span>"
    head = "".join(
        f"<th data-location='{e(p.name)}'>{e(p.name)}{gone if p.live is False else ''}</th>"
        for p in snap.places
    )
    cells = {(c.probe, c.location): c for c in snap.cells}
    body = []
    for probe in sorted({c.probe for c in snap.cells}):
        tds = []
        for p in snap.places:
            c = cells.get((probe, p.name))
            if c is None:
                tds.append("<td class='muted'>-</td>")
                continue
            note = " <b class='stale'>failing here</b>" if c.failing else ""
            attrs = f"data-location='{e(p.name)}' data-failing='{int(c.failing)}'"
            tds.append(f"<td {attrs}>{badge(c.status)}{note}</td>")
        body.append(f"<tr data-probe='{e(probe)}'><td class='name'>{e(probe)}</td>{''.join(tds)}</tr>")
    return (
        "<section class='card' id='locations'><h3>Locations</h3>"
        "<div class='muted'>Each probe as each location sees it. A failure seen from too few "
        "locations (one zone's network) is shown here but does not page.</div>"
        f"<table class='steps'><tr><th>probe</th>{head}</tr>{''.join(body)}</table></section>"
    )
