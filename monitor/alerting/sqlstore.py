"""Alerting in SQL: incident state and records, the outbox, Slack threads and silences.

- An incident transition runs the pure state machine inside the transaction that stores its outcome
  and its outbox rows; a batch of them shares one transaction (:meth:`SqlAlertingStore.transitions`).
  Transitions are serialized across replicas: on PostgreSQL by a transaction-scoped advisory lock,
  on SQLite by the write transaction's database lock.
- The outbox is claimed with ``FOR UPDATE SKIP LOCKED`` plus a lease, so each event goes to one
  dispatcher, and it is delivered in order per channel: only the oldest pending row of a channel
  can be claimed.

Everything here is blocking; see :mod:`monitor.alerting.store` for who crosses to a thread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, func, insert, or_, select, update

from monitor.alerting import quorum_sql
from monitor.alerting.base import Event
from monitor.alerting.incidents import IncidentState, Phase
from monitor.alerting.quorum import LocationView
from monitor.alerting.silences import Silence
from monitor.alerting.store import Decide, Here, IncidentRecord, IncidentView, OutboxItem, Step
from monitor.store.database import Database
from monitor.store.epoch import from_epoch, to_epoch
from monitor.store.schema import incident_state, incidents, outbox, silences, threads

#: How long finished outbox rows are kept for inspection.
OUTBOX_KEEP_S = 30 * 86400
#: The PostgreSQL advisory lock key that serializes incident transitions across replicas.
TRANSITION_LOCK = 0x73796E74686D6F6E % (2**63)


class SqlAlertingStore:
    """The :class:`monitor.alerting.store.IncidentStore` and :class:`SilenceStore` on a
    :class:`Database` (see module docstring)."""

    def __init__(self, db: Database, *, retention_days: int = 30) -> None:
        self.db = db
        self.retention_s = retention_days * 86400.0

    def prune(self, now: datetime) -> dict[str, int]:
        """Apply retention: finished outbox rows after a month, silences ended before the raw-run
        retention, locations (views and heartbeats) not heard from within it. Rows removed per table."""
        t = to_epoch(now)
        with self.db.write() as conn:
            n_out = conn.execute(
                delete(outbox).where(outbox.c.state != "pending", outbox.c.finished_at < t - OUTBOX_KEEP_S)
            ).rowcount
            n_sil = conn.execute(delete(silences).where(silences.c.ends_at < t - self.retention_s)).rowcount
            # A location gone for the raw-run retention (decommissioned) leaves the views.
            n_loc = quorum_sql.forget_before(conn, t - self.retention_s)
        return {"outbox": int(n_out), "silences": int(n_sil), "location_views": n_loc}

    def transition(
        self, probe: str, now: datetime, decide: Decide, channels: Sequence[str], here: Here | None = None
    ) -> list[Event]:
        """Run ``decide`` on ``probe``'s state (seeing every other probe's) and store its outcome and
        its events (one outbox row per event and channel) in one transaction.

        With ``here`` (the location the run was made from), that location's view of the probe is
        updated and stored in the same transaction, and ``decide`` sees every location's view and
        the live locations (the quorum, :mod:`monitor.alerting.quorum`).

        Transitions are serialized across replicas: an incident spans probes, so deciding that the
        last member recovered must not race with another member joining. SQLite's write lock does
        that; on PostgreSQL a transaction-scoped advisory lock does (one transition at a time, each a
        few small statements).
        """
        return self.transitions([Step(probe, now, decide, here)], channels)[0]

    def transitions(self, steps: Sequence[Step], channels: Sequence[str]) -> list[list[Event]]:
        """:meth:`transition` of each of ``steps`` in order, in one transaction; their events.

        Why one transaction: every transition reads every probe's state and the records of every
        open incident. During a platform-wide outage each of hundreds of failing probes' results
        needs a transition, and reading everything once per result (a transaction each) kept the
        daemon evaluating a fraction of its results. The states are read once here and kept current
        as each step decides; the records are read again only after a step changed one. Each step
        decides exactly as it would alone, after the ones before it. An error in any step rolls back
        all of them (the caller retries them one by one to find the one at fault).
        """
        out: list[list[Event]] = []
        with self.db.write() as conn:
            if self.db.postgres:
                conn.execute(select(func.pg_advisory_xact_lock(TRANSITION_LOCK)))
            states = {
                p: IncidentState.from_dict(json.loads(data))
                for p, data in conn.execute(select(incident_state.c.probe, incident_state.c.data))
            }
            records: list[IncidentRecord] | None = None
            times = [to_epoch(step.now) for step in steps]
            # Read once for the whole batch, each step then takes what applies at its time.
            silenced = self._silences_between(conn, min(times, default=0.0), max(times, default=0.0))
            beats = quorum_sql.heartbeats(conn) if any(step.here for step in steps) else {}
            for step in steps:
                t = to_epoch(step.now)
                known = step.probe in states
                old = states.get(step.probe) or IncidentState(step.probe)
                others = {p: s for p, s in states.items() if p != step.probe}
                if records is None:
                    open_ids = {
                        s.incident_id for s in states.values() if s.incident_id and s.phase is Phase.OPEN
                    }
                    if old.incident_id and old.phase is Phase.OPEN:
                        open_ids.add(old.incident_id)
                    records = self._records(conn, open_ids)
                active = [s for s in silenced if s.active_at(step.now)]
                views, live = self._here(conn, step.probe, step.here, t, beats)
                new, events = step.decide(
                    IncidentView(
                        state=old, others=others, records=records, silences=active, views=views, live=live
                    )
                )
                data = json.dumps(new.to_dict())
                if known:
                    conn.execute(
                        update(incident_state)
                        .where(incident_state.c.probe == step.probe)
                        .values(data=data, updated_at=t)
                    )
                else:
                    conn.execute(insert(incident_state).values(probe=step.probe, data=data, updated_at=t))
                states[step.probe] = new
                moved = (old.phase, old.incident_id) != (new.phase, new.incident_id)
                if self._record_incident(conn, old, new, t) or moved:
                    records = None  # the open incidents or their records changed: read them again
                rows = [
                    {
                        "incident_id": e.incident_id,
                        "probe": e.probe,
                        "channel": ch,
                        "kind": e.kind.value,
                        "payload": json.dumps(e.to_dict()),
                        "created_at": t,
                        "state": "pending",
                        "attempts": 0,
                        "next_attempt_at": t,
                    }
                    for e in events
                    for ch in channels
                ]
                if rows:
                    conn.execute(insert(outbox), rows)
                out.append(events)
            for location in {step.here.location for step in steps if step.here}:
                quorum_sql.beat(conn, location, beats[location])
        return out

    @staticmethod
    def _here(
        conn: Connection, probe: str, here: Here | None, t: float, beats: dict[str, float]
    ) -> tuple[dict[str, LocationView], frozenset[str]]:
        """Every location's view of ``probe``, ``here``'s updated and stored, and the live locations.

        ``beats`` (every location's last heartbeat, read in this transaction) takes ``here``'s
        beat at ``t``; the caller stores it once the transaction's steps are done."""
        if here is None:
            return {}, frozenset()
        views = {v.location: v for v in quorum_sql.read_views(conn, probe)}
        mine = here.observe(views.get(here.location))
        quorum_sql.write_view(conn, mine, t, exists=here.location in views)
        beats[here.location] = t
        views[here.location] = mine
        return views, quorum_sql.live_in(beats, t)

    def heartbeat(self, location: str, now: datetime) -> None:
        """Mark ``location`` live now (each daemon, every :data:`~monitor.alerting.quorum.HEARTBEAT_S`)."""
        with self.db.write() as conn:
            quorum_sql.beat(conn, location, to_epoch(now))

    def location_views(self) -> list[LocationView]:
        """Every location's view of every probe."""
        with self.db.read() as conn:
            return quorum_sql.read_views(conn)

    def location_heartbeats(self) -> dict[str, float]:
        """Each location's last heartbeat (epoch seconds)."""
        with self.db.read() as conn:
            return quorum_sql.heartbeats(conn)

    def _records(self, conn: Connection, incident_ids: set[str]) -> list[IncidentRecord]:
        if not incident_ids:
            return []
        q = select(incidents).where(incidents.c.incident_id.in_(sorted(incident_ids)))
        return [self._incident_record(r) for r in conn.execute(q)]

    @staticmethod
    def _incident_record(r: Any) -> IncidentRecord:
        return IncidentRecord(
            incident_id=r.incident_id,
            probe=r.probe,
            incident_probe=r.incident_probe,
            opened_at=from_epoch(r.opened_at),
            resolved_at=from_epoch(r.resolved_at) if r.resolved_at is not None else None,
            summary=r.summary,
        )

    def _record_incident(self, conn: Connection, old: IncidentState, new: IncidentState, t: float) -> bool:
        """Store what ``old`` -> ``new`` changes in the incident records; True when it changed any."""
        changed = False
        if (
            old.phase is Phase.OPEN
            and old.incident_id
            and (new.phase is Phase.OK or new.incident_id != old.incident_id)
        ):
            conn.execute(
                update(incidents)
                .where(incidents.c.incident_id == old.incident_id, incidents.c.probe == old.probe)
                .values(resolved_at=t)
            )
            changed = True
        if new.phase is Phase.OPEN and new.incident_id:
            exists_q = select(incidents.c.probe).where(
                incidents.c.incident_id == new.incident_id, incidents.c.probe == new.probe
            )
            if conn.execute(exists_q).first() is None:
                conn.execute(
                    insert(incidents).values(
                        incident_id=new.incident_id,
                        probe=new.probe,
                        incident_probe=new.incident_probe or new.probe,
                        opened_at=to_epoch(new.opened_at) if new.opened_at else t,
                        summary=new.signature or "",
                    )
                )
                changed = True
            else:
                conn.execute(
                    update(incidents)
                    .where(incidents.c.incident_id == new.incident_id, incidents.c.probe == new.probe)
                    .values(summary=new.signature or "")
                )
                changed = new.signature != old.signature or new.incident_id != old.incident_id
        return changed

    def incident_states(self) -> dict[str, IncidentState]:
        """Every probe's stored state machine state."""
        with self.db.read() as conn:
            return {
                p: IncidentState.from_dict(json.loads(d))
                for p, d in conn.execute(select(incident_state.c.probe, incident_state.c.data))
            }

    def incidents(self, *, open_only: bool, limit: int) -> list[IncidentRecord]:
        """Incidents, newest first; only unresolved ones when ``open_only``."""
        q = select(incidents)
        if open_only:
            q = q.where(incidents.c.resolved_at.is_(None))
        q = q.order_by(incidents.c.opened_at.desc()).limit(limit)
        with self.db.read() as conn:
            return [self._incident_record(r) for r in conn.execute(q)]

    def claim_next(self, now: datetime, owner: str, lease_s: float) -> OutboxItem | None:
        """Lease the oldest due pending row of any channel whose older rows are all finished."""
        t = to_epoch(now)
        earlier = outbox.alias("earlier")
        blocked = exists().where(
            earlier.c.channel == outbox.c.channel, earlier.c.state == "pending", earlier.c.id < outbox.c.id
        )
        q = (
            select(outbox)
            .where(
                outbox.c.state == "pending",
                ~blocked,
                outbox.c.next_attempt_at <= t,
                or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < t),
            )
            .order_by(outbox.c.id)
            .limit(1)
        )
        if self.db.postgres:
            q = q.with_for_update(skip_locked=True, of=outbox)
        with self.db.write() as conn:
            row = conn.execute(q).first()
            if row is None:
                return None
            conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(lease_owner=owner, lease_until=t + lease_s, attempts=row.attempts + 1)
            )
        return OutboxItem(
            id=row.id,
            channel=row.channel,
            event=Event.from_dict(json.loads(row.payload)),
            attempts=row.attempts + 1,
            created_at=from_epoch(row.created_at),
            lease_owner=owner,
        )

    def thread_ref(self, incident_id: str, channel: str) -> str | None:
        """What ``channel`` returned for the first delivered message of ``incident_id``."""
        q = select(threads.c.ref).where(threads.c.incident_id == incident_id, threads.c.channel == channel)
        with self.db.read() as conn:
            ref: str | None = conn.execute(q).scalar()
            return ref

    def _finish(self, conn: Connection, item: OutboxItem, values: Mapping[str, Any]) -> bool:
        res = conn.execute(
            update(outbox)
            .where(outbox.c.id == item.id, outbox.c.lease_owner == item.lease_owner)
            .values(lease_owner=None, lease_until=None, **values)
        )
        return bool(res.rowcount)

    def mark_sent(self, item: OutboxItem, now: datetime, thread: str | None) -> None:
        """Record a delivery (and the thread it started, if any)."""
        with self.db.write() as conn:
            self._finish(conn, item, {"state": "sent", "finished_at": to_epoch(now), "last_error": None})
            if thread is not None:
                present = select(threads.c.ref).where(
                    threads.c.incident_id == item.event.incident_id, threads.c.channel == item.channel
                )
                if conn.execute(present).first() is None:
                    conn.execute(
                        insert(threads).values(
                            incident_id=item.event.incident_id, channel=item.channel, ref=thread
                        )
                    )

    def mark_retry(self, item: OutboxItem, next_attempt_at: datetime, error: str) -> None:
        """Release the lease and schedule another attempt."""
        with self.db.write() as conn:
            self._finish(conn, item, {"next_attempt_at": to_epoch(next_attempt_at), "last_error": error})

    def mark_failed(self, item: OutboxItem, now: datetime, error: str) -> None:
        """Give up on a row (permanent error or too old)."""
        with self.db.write() as conn:
            self._finish(conn, item, {"state": "failed", "finished_at": to_epoch(now), "last_error": error})

    def outbox_pending(self) -> dict[str, int]:
        """Pending rows per channel."""
        q = (
            select(outbox.c.channel, func.count())
            .where(outbox.c.state == "pending")
            .group_by(outbox.c.channel)
        )
        with self.db.read() as conn:
            return {ch: int(n) for ch, n in conn.execute(q)}

    def outbox_rows(self) -> list[dict[str, Any]]:
        """Every outbox row, oldest first (for tests and inspection)."""
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(select(outbox).order_by(outbox.c.id))]

    # ---- silences --------------------------------------------------------------------------------

    def _silences_between(self, conn: Connection, first: float, last: float) -> list[Silence]:
        """The silences active at some time in ``[first, last]`` (:meth:`Silence.active_at` says
        which at each)."""
        q = select(silences).where(
            silences.c.starts_at <= last,
            silences.c.ends_at > first,
            or_(silences.c.cleared_at.is_(None), silences.c.cleared_at > first),
        )
        return [self._silence(r) for r in conn.execute(q)]

    @staticmethod
    def _silence(r: Any) -> Silence:
        return Silence(
            id=int(r.id),
            probe=r.probe,
            starts_at=from_epoch(r.starts_at),
            ends_at=from_epoch(r.ends_at),
            reason=r.reason,
            created_by=r.created_by,
            created_at=from_epoch(r.created_at),
            cleared_at=from_epoch(r.cleared_at) if r.cleared_at is not None else None,
        )

    def add_silence(
        self, *, probe: str, starts_at: datetime, ends_at: datetime, reason: str, created_by: str
    ) -> Silence:
        """Store a silence for ``probe`` (``"*"`` for all) and return it."""
        with self.db.write() as conn:
            pk = conn.execute(
                insert(silences)
                .values(
                    probe=probe,
                    starts_at=to_epoch(starts_at),
                    ends_at=to_epoch(ends_at),
                    reason=reason,
                    created_by=created_by,
                    created_at=to_epoch(starts_at),
                )
                .returning(silences.c.id)
            ).scalar_one()
        return Silence(int(pk), probe, starts_at, ends_at, reason, created_by, starts_at)

    def silences(self, *, active_at: datetime | None) -> list[Silence]:
        """Silences active at ``active_at``, or every stored one when None (newest first)."""
        with self.db.read() as conn:
            if active_at is not None:
                t = to_epoch(active_at)
                return self._silences_between(conn, t, t)
            return [self._silence(r) for r in conn.execute(select(silences).order_by(silences.c.id.desc()))]

    def clear_silences(self, *, now: datetime, silence_id: int | None, probe: str | None) -> int:
        """End active silences now, by id or by probe; returns how many were cleared."""
        t = to_epoch(now)
        cond = [silences.c.cleared_at.is_(None), silences.c.ends_at > t]
        if silence_id is not None:
            cond.append(silences.c.id == silence_id)
        if probe is not None:
            cond.append(silences.c.probe == probe)
        with self.db.write() as conn:
            return int(conn.execute(update(silences).where(*cond).values(cleared_at=t)).rowcount)
