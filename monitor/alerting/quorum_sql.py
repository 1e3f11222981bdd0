"""The quorum's rows in SQL: each location's view of each probe, and the live locations.

Used by :class:`monitor.alerting.sqlstore.SqlAlertingStore` inside its transition transaction
(serialized across replicas, so a view's read-modify-write never races) and by the readers of
the per-location state (API, status page, ``synthmon locations``). Blocking, like the store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlalchemy import Connection, delete, insert, select, update

from monitor.alerting.quorum import LIVE_S, LocationView
from monitor.store.database import dialect_insert
from monitor.store.schema import location_heartbeats, location_views


def read_views(conn: Connection, probe: str | None = None) -> list[LocationView]:
    """Every stored view (of ``probe`` only, when given), by probe and location."""
    q = select(location_views.c.data).order_by(location_views.c.probe, location_views.c.location)
    if probe is not None:
        q = q.where(location_views.c.probe == probe)
    return [LocationView.from_dict(json.loads(data)) for data in conn.execute(q).scalars()]


def write_view(conn: Connection, view: LocationView, t: float, *, exists: bool) -> None:
    """Store ``view`` (``exists``: its row is there already, read in this transaction)."""
    data = json.dumps(view.to_dict())
    if exists:
        conn.execute(
            update(location_views)
            .where(location_views.c.probe == view.probe, location_views.c.location == view.location)
            .values(data=data, updated_at=t)
        )
    else:
        conn.execute(
            insert(location_views).values(probe=view.probe, location=view.location, data=data, updated_at=t)
        )


def beat(conn: Connection, location: str, t: float) -> None:
    """Mark ``location`` live at ``t`` (an upsert: replicas in one location beat concurrently)."""
    stmt = (
        dialect_insert(conn.dialect.name, location_heartbeats)
        .values(location=location, last_seen=t)
        .on_conflict_do_update(index_elements=[location_heartbeats.c.location], set_={"last_seen": t})
    )
    conn.execute(stmt)


def live_in(beats: Mapping[str, float], t: float) -> frozenset[str]:
    """The locations of ``beats`` (:func:`heartbeats`) heard from within :data:`LIVE_S` of ``t``."""
    return frozenset(location for location, seen in beats.items() if seen >= t - LIVE_S)


def heartbeats(conn: Connection) -> dict[str, float]:
    """Every location's last heartbeat (epoch seconds)."""
    rows = conn.execute(select(location_heartbeats.c.location, location_heartbeats.c.last_seen))
    return {loc: float(seen) for loc, seen in rows}


def forget_before(conn: Connection, t: float) -> int:
    """Delete views not updated and heartbeats not refreshed since ``t``; the views removed."""
    n = conn.execute(delete(location_views).where(location_views.c.updated_at < t)).rowcount
    conn.execute(delete(location_heartbeats).where(location_heartbeats.c.last_seen < t))
    return int(n)
