"""History in SQL: runs, their steps and hourly rollups, on SQLite or PostgreSQL.

Rollups are folded in the same transaction as each batch of runs (``ON CONFLICT DO UPDATE``, atomic
on both backends, so replicas can fold concurrently). Everything here is blocking; see
:mod:`monitor.history.base` for who crosses to a thread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, insert, select

from monitor.history.base import UptimeRow
from monitor.results import ProbeResult
from monitor.store.database import Database
from monitor.store.epoch import to_epoch
from monitor.store.schema import rollups, runs, steps
from probes.base import Status


def hour_bucket(seconds: float) -> int:
    """The start (epoch seconds) of the UTC hour containing ``seconds``: the rollup key."""
    return int(seconds // 3600) * 3600


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


def _merge_uptime(rows: Sequence[UptimeRow]) -> list[UptimeRow]:
    """Rows of adjacent time ranges added up per probe and step."""
    merged: dict[tuple[str, str | None], UptimeRow] = {}
    for row in rows:
        key = (row.probe, row.step)
        seen = merged.get(key)
        merged[key] = (
            row
            if seen is None
            else UptimeRow(
                row.probe,
                row.step,
                seen.runs + row.runs,
                seen.failures + row.failures,
                seen.errors + row.errors,
                seen.degraded + row.degraded,
                seen.duration_sum + row.duration_sum,
                max(seen.duration_max, row.duration_max),
            )
        )
    return sorted(merged.values(), key=lambda u: (u.probe, u.step or ""))


class SqlHistoryStore:
    """The :class:`monitor.history.base.HistoryStore` on a :class:`Database` (see module docstring)."""

    def __init__(self, db: Database, *, retention_days: int = 30, rollup_retention_days: int = 400) -> None:
        self.db = db
        self.retention_s = retention_days * 86400.0
        self.rollup_retention_s = rollup_retention_days * 86400.0

    def append_runs(self, results: Sequence[ProbeResult]) -> int:
        """Store ``results`` (skipping run ids already stored) and fold them into the hourly rollups,
        in one transaction. Returns how many were new."""
        if not results:
            return 0
        with self.db.write() as conn:
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
        stmt = self.db.insert(rollups).values(
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
        with self.db.read() as conn:
            return [ProbeResult.from_dict(json.loads(p)) for p in conn.execute(q).scalars()]

    def latest_runs(self) -> dict[str, ProbeResult]:
        """The newest stored run of every probe."""
        newest = (
            select(runs.c.probe, func.max(runs.c.started_at).label("at")).group_by(runs.c.probe).subquery()
        )
        q = select(runs.c.probe, runs.c.payload).join(
            newest, and_(runs.c.probe == newest.c.probe, runs.c.started_at == newest.c.at)
        )
        with self.db.read() as conn:
            return {p: ProbeResult.from_dict(json.loads(payload)) for p, payload in conn.execute(q)}

    def uptime(self, *, since: datetime, until: datetime, now: datetime) -> list[UptimeRow]:
        """Counts per probe (``step`` None) and per step between ``since`` and ``until``.

        Windows inside raw retention are exact: the whole hours in them are read from the hourly
        rollups (folded in the same transaction as the runs, so they agree with the raw rows), only
        the partial hours at either edge from raw rows, so a 30-day window reads about 720 rollup
        rows per probe and step instead of every run. Windows reaching past raw retention come from
        the rollups alone (hour-aligned).
        """
        start, end = to_epoch(since), to_epoch(until)
        if start < to_epoch(now) - self.retention_s:
            return self._uptime_rollups(start, end)
        first_hour = -(-start // 3600) * 3600
        last_hour = hour_bucket(end)
        if last_hour - first_hour < 2 * 3600:
            return self._uptime_raw(start, end)  # a short window: raw rows are few
        parts = [
            *self._uptime_raw(start, first_hour),
            *self._uptime_rollups(first_hour, last_hour),
            *self._uptime_raw(last_hour, end),
        ]
        return _merge_uptime(parts)

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
        with self.db.read() as conn:
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
        with self.db.read() as conn:
            out = [UptimeRow(r[0], r[1] or None, *self._nums(r[2:])) for r in conn.execute(q)]
        return sorted(out, key=lambda u: (u.probe, u.step or ""))

    @staticmethod
    def _nums(row: Sequence[Any]) -> tuple[int, int, int, int, float, float]:
        return (int(row[0]), int(row[1]), int(row[2]), int(row[3]), float(row[4]), float(row[5]))

    def prune(self, now: datetime) -> dict[str, int]:
        """Apply retention: raw runs and steps, then rollups. Rows removed per table."""
        t = to_epoch(now)
        raw_cutoff = t - self.retention_s
        with self.db.write() as conn:
            conn.execute(delete(steps).where(steps.c.started_at < raw_cutoff))
            n_runs = conn.execute(delete(runs).where(runs.c.started_at < raw_cutoff)).rowcount
            n_roll = conn.execute(
                delete(rollups).where(rollups.c.hour < hour_bucket(t - self.rollup_retention_s))
            ).rowcount
        return {"runs": int(n_runs), "rollups": int(n_roll)}
