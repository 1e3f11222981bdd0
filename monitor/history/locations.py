"""The newest run of each probe from each location (``synthmon locations``, the status page).

Kept apart from :mod:`monitor.history.sqlstore` because it is the only query that reads the
``location`` column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, func, select

from monitor.store.epoch import from_epoch, to_epoch
from monitor.store.schema import runs
from probes.base import Status


@dataclass(frozen=True, slots=True)
class LocationRun:
    """The newest stored run of ``probe`` made from ``location``."""

    probe: str
    location: str
    run_id: str
    started_at: datetime
    status: Status
    failing_step: str | None


def latest_by_location(conn: Connection, since: datetime) -> list[LocationRun]:
    """The newest run per probe and location among the runs started since ``since``.

    The bound keeps the scan to the recent part of the ``(probe, started_at)`` index and lets a
    location that stopped probing long ago drop out of the view.
    """
    t = to_epoch(since)
    # Grouped location first: grouped by probe first, SQLite walks the whole (probe, started_at)
    # index for its order (every run kept: 0.2 s at a year of history) instead of the recent range
    # of the started_at index.
    newest = (
        select(runs.c.probe, runs.c.location, func.max(runs.c.started_at).label("at"))
        .where(runs.c.started_at >= t)
        .group_by(runs.c.location, runs.c.probe)
        .subquery()
    )
    q = (
        select(
            runs.c.probe,
            runs.c.location,
            runs.c.run_id,
            runs.c.started_at,
            runs.c.status,
            runs.c.failing_step,
        )
        .join(
            newest,
            and_(
                runs.c.probe == newest.c.probe,
                runs.c.location == newest.c.location,
                runs.c.started_at == newest.c.at,
            ),
        )
        .order_by(runs.c.probe, runs.c.location)
    )
    out: dict[tuple[str, str], LocationRun] = {}
    for r in conn.execute(q):
        # Two runs of one location at the same instant (two replicas there): either is the newest.
        out[(r.probe, r.location)] = LocationRun(
            r.probe, r.location, r.run_id, from_epoch(r.started_at), Status(r.status), r.failing_step
        )
    return list(out.values())
