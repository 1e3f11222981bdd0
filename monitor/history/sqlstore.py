"""The one store implementation: SQLAlchemy Core over SQLite (default, WAL) or PostgreSQL.

Only the locking differs between the backends:

- SQLite: writers take the database lock up front (``BEGIN IMMEDIATE``), so a read-modify-write such
  as an incident transition cannot interleave with another writer; readers run beside them (WAL).
- PostgreSQL: several replicas may share the store. An incident transition locks its probe's
  ``incident_state`` row (``SELECT ... FOR UPDATE``), so transitions of one probe are serialized;
  the outbox is claimed with ``FOR UPDATE SKIP LOCKED`` plus a lease, so each event goes to one
  dispatcher.

The outbox is delivered in order per channel: only the oldest pending row of a channel can be
claimed. Everything here is blocking; see :mod:`monitor.history.base` for who crosses to a thread.
"""

from __future__ import annotations

import asyncio
import functools
import json
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from monitor.alerting.base import Event
from monitor.alerting.incidents import IncidentState, Phase
from monitor.alerting.silences import ALL_PROBES, Silence
from monitor.history import migrate
from monitor.history.base import Decide, IncidentRecord, IncidentView, OutboxItem, PruneReport, UptimeRow
from monitor.history.schema import incident_state, incidents, outbox, rollups, runs, silences, steps, threads
from monitor.history.timeutil import from_epoch, hour_bucket, to_epoch
from monitor.results import ProbeResult
from probes.base import Status

#: How long finished outbox rows are kept for inspection.
OUTBOX_KEEP_S = 30 * 86400
_WRITE = "synthmon_write"
T = TypeVar("T")


#: PostgreSQL session settings: a statement or a lock wait never holds a store thread for long.
STATEMENT_TIMEOUT_MS = 10_000
LOCK_TIMEOUT_MS = 5_000
#: libpq TCP settings: a half-open connection (peer gone without a FIN) is noticed within ~30 s
#: instead of the kernel's default of hours. keepalives cover an idle connection, tcp_user_timeout
#: one with unacknowledged data in flight.
PG_TCP_ARGS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def _pg_connect_args(parsed: URL, connect_timeout_s: float) -> dict[str, Any]:
    """libpq connection arguments; ``options`` given in the URL (e.g. a search_path) are kept."""
    own = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS}"
    from_url = parsed.query.get("options")
    url_options = " ".join(from_url) if isinstance(from_url, tuple) else (from_url or "")
    return {
        "connect_timeout": int(max(1, connect_timeout_s)),
        # connect_args win over the URL's query, so the URL's options are merged in, not lost.
        "options": f"{url_options} {own}".strip(),
        **PG_TCP_ARGS,
    }


def create_store_engine(url: str, *, connect_timeout_s: float = 5.0, create_dirs: bool = True) -> Engine:
    """An engine for ``url`` with the per-backend settings the store relies on. Does not connect.

    SQLite: the parent directory is created (unless ``create_dirs`` is false: read-only commands
    must not create a store), WAL is switched on, and transactions are begun by us (deferred for
    reads, immediate for writes) rather than by the sqlite3 module's own heuristics; the busy
    timeout bounds how long a write waits for another writer.
    PostgreSQL: a short connect timeout so an outage turns into buffering quickly, pre-ping to
    survive a database restart, server-side statement and lock timeouts and TCP keepalives so a
    hung database or a half-open connection fails a call instead of blocking it for ever.

    Raises ``sqlalchemy.exc.ArgumentError`` for a URL that cannot be parsed (a config error).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(
            parsed,
            pool_pre_ping=True,
            pool_timeout=connect_timeout_s * 2,
            connect_args=_pg_connect_args(parsed, connect_timeout_s),
        )
    if create_dirs and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": connect_timeout_s})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(connect_timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def sqlite_path(url: str) -> Path | None:
    """The absolute file path of a SQLite ``url`` (resolved against the working directory, as the
    daemon resolves it), or None for other backends and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).resolve()


class StoreExecutor(Executor):
    """The store's own worker threads (never the loop's default executor).

    Why not ``ThreadPoolExecutor``: its workers are joined at interpreter exit, so one thread stuck
    on a hung database connection would keep the process from exiting after SIGTERM (and ECS would
    SIGKILL it). These workers are daemon threads; callers bound their waits with timeouts, and a
    stuck thread is abandoned at exit. ``threads`` bounds how many store calls run at once.
    """

    def __init__(self, threads: int = 4, *, name: str = "synthmon-store") -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads = threads
        self._name = name
        self._started: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)``; its future is completed by a worker thread."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("store executor is shut down")
            future: Future[Any] = Future()
            self._queue.put((future, functools.partial(fn, *args, **kwargs)))
            if len(self._started) < self._threads:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._started)}", daemon=True
                )
                self._started.append(thread)
                thread.start()
            return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the awaiting caller, which decides
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; with ``cancel_futures`` drop what has not started. ``wait`` joins
        only workers that finish; a worker stuck in a database call is left behind (daemon thread)."""
        with self._lock:
            self._shutdown = True
            started = list(self._started)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in started:
            self._queue.put(None)
        if wait:
            for thread in started:
                thread.join()

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` on a store thread."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))


@dataclass(frozen=True, slots=True)
class _Agg:
    runs: int = 0
    failures: int = 0
    errors: int = 0
    degraded: int = 0
    duration_sum: float = 0.0
    duration_max: float = 0.0

    def add(self, status: Status, duration: float) -> _Agg:
        return _Agg(
            self.runs + 1,
            self.failures + (status is Status.FAIL),
            self.errors + (status is Status.ERROR),
            self.degraded + (status is Status.DEGRADED),
            self.duration_sum + duration,
            max(self.duration_max, duration),
        )


class SqlStore:
    """History, incident state, outbox and silences in one SQL database (see module docstring)."""

    def __init__(self, engine: Engine, *, retention_days: int = 30, rollup_retention_days: int = 400) -> None:
        self.engine = engine
        self.retention_s = retention_days * 86400.0
        self.rollup_retention_s = rollup_retention_days * 86400.0
        self._postgres = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str, *, retention_days: int = 30, rollup_retention_days: int = 400) -> SqlStore:
        """Connect to ``url``, apply pending migrations (refusing a newer schema) and return the store."""
        return cls._on_schema(
            create_store_engine(url),
            migrate.upgrade,
            retention_days=retention_days,
            rollup_retention_days=rollup_retention_days,
        )

    @classmethod
    def open_existing(
        cls, url: str, *, retention_days: int = 30, rollup_retention_days: int = 400
    ) -> SqlStore:
        """Open a store that must already be migrated to this code's schema, changing nothing.

        For the read-and-edit commands (history, uptime, silence): they must neither create a
        SQLite file nor migrate a database a running daemon of another version is using. Raises
        :class:`migrate.SchemaMissingError` (no such file / no schema yet),
        :class:`migrate.SchemaOutdatedError` or :class:`migrate.SchemaTooNewError`.
        """
        path = sqlite_path(url)
        if path is not None and not path.exists():
            raise migrate.SchemaMissingError(f"no store at {path}; {migrate.HOW_TO_MIGRATE}")
        return cls._on_schema(
            create_store_engine(url, create_dirs=False),
            migrate.check,
            retention_days=retention_days,
            rollup_retention_days=rollup_retention_days,
        )

    @classmethod
    def _on_schema(
        cls,
        engine: Engine,
        schema_step: Callable[[Engine], object],
        *,
        retention_days: int,
        rollup_retention_days: int,
    ) -> SqlStore:
        """A store on ``engine`` once ``schema_step`` (migrate or check) accepted its schema.

        A refused schema (or any error, interrupts included) disposes the engine before
        re-raising, so no connection pool outlives a store that was never returned.
        """
        try:
            schema_step(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, retention_days=retention_days, rollup_retention_days=rollup_retention_days)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    def _insert(self, conn: Connection, table: Any) -> Any:
        return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)

    # ---- history ---------------------------------------------------------------------------------

    def append_runs(self, results: Sequence[ProbeResult]) -> int:
        """Store ``results`` (skipping run ids already stored) and fold them into the hourly rollups,
        in one transaction. Returns how many were new."""
        if not results:
            return 0
        with self._write() as conn:
            ids = [r.run_id for r in results]
            known = set(conn.execute(select(runs.c.run_id).where(runs.c.run_id.in_(ids))).scalars())
            aggs: dict[tuple[str, str, int], _Agg] = {}
            added = 0
            for result in results:
                if result.run_id in known:
                    continue
                known.add(result.run_id)
                added += 1
                started = to_epoch(result.started_at)
                failing = result.failing_step
                pk = conn.execute(
                    insert(runs)
                    .values(
                        run_id=result.run_id,
                        probe=result.probe,
                        kind=result.kind,
                        environment=result.environment,
                        started_at=started,
                        duration_s=result.duration_s,
                        status=result.status.value,
                        failing_step=failing.name if failing else None,
                        payload=json.dumps(result.to_dict(), separators=(",", ":")),
                    )
                    .returning(runs.c.id)
                ).scalar_one()
                if result.steps:
                    conn.execute(
                        insert(steps),
                        [
                            {
                                "run_pk": pk,
                                "probe": result.probe,
                                "seq": i,
                                "name": s.name,
                                "status": s.status.value,
                                "duration_s": s.duration_s,
                                "http_status": s.http_status,
                                "error_class": s.error_class,
                                "started_at": started,
                            }
                            for i, s in enumerate(result.steps)
                        ],
                    )
                hour = hour_bucket(started)
                key = (result.probe, "", hour)
                aggs[key] = aggs.get(key, _Agg()).add(result.status, result.duration_s)
                for s in result.steps:
                    key = (result.probe, s.name, hour)
                    aggs[key] = aggs.get(key, _Agg()).add(s.status, s.duration_s)
            for (probe, step, hour), agg in aggs.items():
                self._upsert_rollup(conn, probe, step, hour, agg)
        return added

    def _upsert_rollup(self, conn: Connection, probe: str, step: str, hour: int, agg: _Agg) -> None:
        stmt = self._insert(conn, rollups).values(
            probe=probe,
            step=step,
            hour=hour,
            runs=agg.runs,
            failures=agg.failures,
            errors=agg.errors,
            degraded=agg.degraded,
            duration_sum=agg.duration_sum,
            duration_max=agg.duration_max,
        )
        ex = stmt.excluded
        # ON CONFLICT ... DO UPDATE is atomic on both backends, so replicas can fold concurrently.
        stmt = stmt.on_conflict_do_update(
            index_elements=[rollups.c.probe, rollups.c.step, rollups.c.hour],
            set_={
                "runs": rollups.c.runs + ex.runs,
                "failures": rollups.c.failures + ex.failures,
                "errors": rollups.c.errors + ex.errors,
                "degraded": rollups.c.degraded + ex.degraded,
                "duration_sum": rollups.c.duration_sum + ex.duration_sum,
                "duration_max": case(
                    (rollups.c.duration_max > ex.duration_max, rollups.c.duration_max), else_=ex.duration_max
                ),
            },
        )
        conn.execute(stmt)

    def runs(self, *, probe: str | None, since: datetime, limit: int) -> list[ProbeResult]:
        """Runs started at or after ``since`` (newest first), optionally of one probe."""
        q = select(runs.c.payload).where(runs.c.started_at >= to_epoch(since))
        if probe is not None:
            q = q.where(runs.c.probe == probe)
        q = q.order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [ProbeResult.from_dict(json.loads(p)) for p in conn.execute(q).scalars()]

    def latest_runs(self) -> dict[str, ProbeResult]:
        """The newest stored run of every probe."""
        newest = (
            select(runs.c.probe, func.max(runs.c.started_at).label("at")).group_by(runs.c.probe).subquery()
        )
        q = select(runs.c.probe, runs.c.payload).join(
            newest, and_(runs.c.probe == newest.c.probe, runs.c.started_at == newest.c.at)
        )
        with self.engine.connect() as conn:
            return {p: ProbeResult.from_dict(json.loads(payload)) for p, payload in conn.execute(q)}

    def uptime(self, *, since: datetime, until: datetime, now: datetime) -> list[UptimeRow]:
        """Counts per probe (``step`` None) and per step between ``since`` and ``until``.

        Windows inside raw retention are counted from raw rows (exact); older windows from the hourly
        rollups (hour-aligned).
        """
        start, end = to_epoch(since), to_epoch(until)
        if start >= to_epoch(now) - self.retention_s:
            return self._uptime_raw(start, end)
        return self._uptime_rollups(start, end)

    @staticmethod
    def _counts(status_col: Any, duration_col: Any) -> list[Any]:
        return [
            func.count(),
            func.coalesce(func.sum(case((status_col == Status.FAIL.value, 1), else_=0)), 0),
            func.coalesce(func.sum(case((status_col == Status.ERROR.value, 1), else_=0)), 0),
            func.coalesce(func.sum(case((status_col == Status.DEGRADED.value, 1), else_=0)), 0),
            func.coalesce(func.sum(duration_col), 0.0),
            func.coalesce(func.max(duration_col), 0.0),
        ]

    def _uptime_raw(self, start: float, end: float) -> list[UptimeRow]:
        run_q = (
            select(runs.c.probe, *self._counts(runs.c.status, runs.c.duration_s))
            .where(runs.c.started_at >= start, runs.c.started_at < end)
            .group_by(runs.c.probe)
        )
        step_q = (
            select(steps.c.probe, steps.c.name, *self._counts(steps.c.status, steps.c.duration_s))
            .where(steps.c.started_at >= start, steps.c.started_at < end)
            .group_by(steps.c.probe, steps.c.name)
        )
        with self.engine.connect() as conn:
            out = [UptimeRow(r[0], None, *self._nums(r[1:])) for r in conn.execute(run_q)]
            out += [UptimeRow(r[0], r[1], *self._nums(r[2:])) for r in conn.execute(step_q)]
        return sorted(out, key=lambda u: (u.probe, u.step or ""))

    def _uptime_rollups(self, start: float, end: float) -> list[UptimeRow]:
        q = (
            select(
                rollups.c.probe,
                rollups.c.step,
                func.sum(rollups.c.runs),
                func.sum(rollups.c.failures),
                func.sum(rollups.c.errors),
                func.sum(rollups.c.degraded),
                func.sum(rollups.c.duration_sum),
                func.max(rollups.c.duration_max),
            )
            .where(rollups.c.hour >= hour_bucket(start), rollups.c.hour < end)
            .group_by(rollups.c.probe, rollups.c.step)
        )
        with self.engine.connect() as conn:
            out = [UptimeRow(r[0], r[1] or None, *self._nums(r[2:])) for r in conn.execute(q)]
        return sorted(out, key=lambda u: (u.probe, u.step or ""))

    @staticmethod
    def _nums(row: Sequence[Any]) -> tuple[int, int, int, int, float, float]:
        return (int(row[0]), int(row[1]), int(row[2]), int(row[3]), float(row[4]), float(row[5]))

    def prune(self, now: datetime) -> PruneReport:
        """Apply retention: raw runs/steps, rollups, finished outbox rows, expired silences."""
        t = to_epoch(now)
        raw_cutoff = t - self.retention_s
        with self._write() as conn:
            conn.execute(delete(steps).where(steps.c.started_at < raw_cutoff))
            n_runs = conn.execute(delete(runs).where(runs.c.started_at < raw_cutoff)).rowcount
            n_roll = conn.execute(
                delete(rollups).where(rollups.c.hour < hour_bucket(t - self.rollup_retention_s))
            ).rowcount
            n_out = conn.execute(
                delete(outbox).where(outbox.c.state != "pending", outbox.c.finished_at < t - OUTBOX_KEEP_S)
            ).rowcount
            n_sil = conn.execute(delete(silences).where(silences.c.ends_at < raw_cutoff)).rowcount
        return PruneReport(runs=n_runs, rollups=n_roll, outbox=n_out, silences=n_sil)

    # ---- incidents and outbox --------------------------------------------------------------------

    def transition(
        self, probe: str, upstreams: Sequence[str], now: datetime, decide: Decide, channels: Sequence[str]
    ) -> list[Event]:
        """Run ``decide`` on ``probe``'s state and store its outcome and its events (one outbox row per
        event and channel) in one transaction, serialized per probe."""
        t = to_epoch(now)
        with self._write() as conn:
            if self._postgres:
                # Make sure the row exists, then lock it: the per-probe mutex across replicas.
                conn.execute(
                    postgresql.insert(incident_state)
                    .values(probe=probe, data=json.dumps(IncidentState(probe).to_dict()), updated_at=t)
                    .on_conflict_do_nothing(index_elements=[incident_state.c.probe])
                )
            q = select(incident_state.c.data).where(incident_state.c.probe == probe)
            if self._postgres:
                q = q.with_for_update()
            raw = conn.execute(q).scalar()
            old = IncidentState.from_dict(json.loads(raw)) if raw else IncidentState(probe)
            ups: dict[str, IncidentState] = {}
            if upstreams:
                for p, data in conn.execute(
                    select(incident_state.c.probe, incident_state.c.data).where(
                        incident_state.c.probe.in_(list(upstreams))
                    )
                ):
                    ups[p] = IncidentState.from_dict(json.loads(data))
            active = self._active_silences(conn, t)
            new, events = decide(IncidentView(state=old, upstreams=ups, silences=active))
            data = json.dumps(new.to_dict())
            if raw is None and not self._postgres:
                conn.execute(insert(incident_state).values(probe=probe, data=data, updated_at=t))
            else:
                conn.execute(
                    update(incident_state)
                    .where(incident_state.c.probe == probe)
                    .values(data=data, updated_at=t)
                )
            self._record_incident(conn, old, new, t)
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
        return events

    def _record_incident(self, conn: Connection, old: IncidentState, new: IncidentState, t: float) -> None:
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
            else:
                conn.execute(
                    update(incidents)
                    .where(incidents.c.incident_id == new.incident_id, incidents.c.probe == new.probe)
                    .values(summary=new.signature or "")
                )

    def incident_states(self) -> dict[str, IncidentState]:
        """Every probe's stored state machine state."""
        with self.engine.connect() as conn:
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
        with self.engine.connect() as conn:
            return [
                IncidentRecord(
                    incident_id=r.incident_id,
                    probe=r.probe,
                    incident_probe=r.incident_probe,
                    opened_at=from_epoch(r.opened_at),
                    resolved_at=from_epoch(r.resolved_at) if r.resolved_at is not None else None,
                    summary=r.summary,
                )
                for r in conn.execute(q)
            ]

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
        if self._postgres:
            q = q.with_for_update(skip_locked=True, of=outbox)
        with self._write() as conn:
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
        with self.engine.connect() as conn:
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
        with self._write() as conn:
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
        with self._write() as conn:
            self._finish(conn, item, {"next_attempt_at": to_epoch(next_attempt_at), "last_error": error})

    def mark_failed(self, item: OutboxItem, now: datetime, error: str) -> None:
        """Give up on a row (permanent error or too old)."""
        with self._write() as conn:
            self._finish(conn, item, {"state": "failed", "finished_at": to_epoch(now), "last_error": error})

    def outbox_pending(self) -> dict[str, int]:
        """Pending rows per channel."""
        q = (
            select(outbox.c.channel, func.count())
            .where(outbox.c.state == "pending")
            .group_by(outbox.c.channel)
        )
        with self.engine.connect() as conn:
            return {ch: int(n) for ch, n in conn.execute(q)}

    def outbox_rows(self) -> list[dict[str, Any]]:
        """Every outbox row, oldest first (for tests and inspection)."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(outbox).order_by(outbox.c.id))]

    # ---- silences --------------------------------------------------------------------------------

    def _active_silences(self, conn: Connection, t: float) -> list[Silence]:
        q = select(silences).where(
            silences.c.starts_at <= t,
            silences.c.ends_at > t,
            or_(silences.c.cleared_at.is_(None), silences.c.cleared_at > t),
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
        with self._write() as conn:
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
        with self.engine.connect() as conn:
            if active_at is not None:
                return self._active_silences(conn, to_epoch(active_at))
            return [self._silence(r) for r in conn.execute(select(silences).order_by(silences.c.id.desc()))]

    def clear_silences(self, *, now: datetime, silence_id: int | None, probe: str | None) -> int:
        """End active silences now, by id or by probe; returns how many were cleared."""
        t = to_epoch(now)
        cond = [silences.c.cleared_at.is_(None), silences.c.ends_at > t]
        if silence_id is not None:
            cond.append(silences.c.id == silence_id)
        if probe is not None:
            cond.append(silences.c.probe == probe)
        with self._write() as conn:
            return int(conn.execute(update(silences).where(*cond).values(cleared_at=t)).rowcount)


__all__ = ["ALL_PROBES", "SqlStore", "StoreExecutor", "create_store_engine", "sqlite_path"]
