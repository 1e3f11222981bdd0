"""History in SQL: runs, their steps and hourly rollups, on SQLite or PostgreSQL.

Rollups are folded in the same transaction as each batch of runs (``ON CONFLICT DO UPDATE``, atomic
on both backends, so replicas can fold concurrently). Everything here is blocking; see
:mod:`monitor.history.base` for who crosses to a thread.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property, reduce
from typing import Any

from sqlalchemy import bindparam, case, delete, func, insert, literal, select, union_all

from monitor.history.base import LatencyHistogram, RunMark, StepMark, UptimeRow
from monitor.history.countsql import CountQueries, Part, bounds
from monitor.history.locations import LocationRun, latest_by_location
from monitor.history.reads import HistoryReads, Read, merge, nums
from monitor.history.readsql import READS, RUN_COLUMNS
from monitor.history.rows import STATUS, RollupAgg, hour_bucket, run_row, stored_result
from monitor.history.settled import Settled, SettledHours
from monitor.results import ProbeResult
from monitor.store.database import Database
from monitor.store.epoch import from_epoch, to_epoch
from monitor.store.latency import BUCKET_COLUMNS
from monitor.store.schema import rollups, runs, steps
from probes.base import Status

#: Probes read per query by :meth:`SqlHistoryStore.recent_runs` (a ``UNION ALL`` of one part each).
PROBES_PER_QUERY = 100


class SqlHistoryStore:
    """The :class:`monitor.history.base.HistoryStore` on a :class:`Database` (see module docstring)."""

    def __init__(self, db: Database, *, retention_days: int = 30, rollup_retention_days: int = 400) -> None:
        self.db = db
        self.retention_s = retention_days * 86400.0
        self.rollup_retention_s = rollup_retention_days * 86400.0
        self.reads = HistoryReads(self._fetch, retention_days=retention_days)
        #: The settled hours :meth:`probe_uptime` keeps; told of late writes and pruning here.
        self.settled: SettledHours[dict[str, UptimeRow]] = SettledHours()
        #: The read statements, each built on first use; the recent-runs ones by probe count.
        self._read_statements: dict[str, Any] = {}
        self._recent_queries: dict[int, Any] = {}

    def _fetch(self, reads: Sequence[Read]) -> list[list[Any]]:
        """The :data:`monitor.history.reads.Fetch` of this store: the statements of ``reads``
        (built once each) in one read transaction."""
        with self.db.read() as conn:
            return [list(conn.execute(self._read_statement(name), dict(params))) for name, params in reads]

    def _read_statement(self, name: str) -> Any:
        built = self._read_statements
        if name not in built:
            built[name] = READS[name]()
        return built[name]

    def append_runs(self, results: Sequence[ProbeResult]) -> int:
        """Store ``results`` (skipping run ids already stored) and fold them into the hourly rollups,
        in one transaction. Returns how many were new.

        The runs go in as one multi-row insert returning their keys in order, and their steps as
        one more, whatever the batch size: a statement per run cost the daemon more CPU than the
        rows themselves."""
        if not results:
            return 0
        with self.db.write() as conn:
            ids = [r.run_id for r in results]
            known = set(conn.execute(select(runs.c.run_id).where(runs.c.run_id.in_(ids))).scalars())
            new: list[ProbeResult] = []
            for result in results:
                if result.run_id not in known:
                    known.add(result.run_id)
                    new.append(result)
            if not new:
                return 0
            keys = conn.execute(
                insert(runs).returning(runs.c.id, sort_by_parameter_order=True), [run_row(r) for r in new]
            ).scalars()
            step_rows = [
                {
                    "run_pk": pk,
                    "probe": result.probe,
                    "seq": i,
                    "name": s.name,
                    "status": s.status.value,
                    "duration_s": s.duration_s,
                    "http_status": s.http_status,
                    "error_class": s.error_class,
                    "started_at": to_epoch(result.started_at),
                }
                for pk, result in zip(keys, new, strict=True)
                for i, s in enumerate(result.steps)
            ]
            if step_rows:
                conn.execute(insert(steps), step_rows)
            aggs: dict[tuple[str, str, int], RollupAgg] = {}
            added = len(new)
            for result in new:
                started = to_epoch(result.started_at)
                hour = hour_bucket(started)
                for step, status, took in (
                    ("", result.status, result.duration_s),
                    *((s.name, s.status, s.duration_s) for s in result.steps),
                ):
                    agg = aggs.get((result.probe, step, hour))
                    if agg is None:
                        agg = aggs[(result.probe, step, hour)] = RollupAgg()
                    agg.add(status, took)
            if aggs:
                # One statement for the whole batch (executemany), sorted so that concurrent
                # replicas lock rollup rows in the same order.
                rows = [agg.row(*key) for key, agg in sorted(aggs.items())]
                conn.execute(self._rollup_upsert, rows)
        self.settled.written({hour for _, _, hour in aggs})
        return added

    @cached_property
    def _rollup_upsert(self) -> Any:
        """The rollup fold, built once: ``INSERT ... ON CONFLICT DO UPDATE`` adding every count
        (atomic on both backends, so replicas can fold concurrently), executed with many rows."""
        stmt = self.db.insert(rollups)
        ex = stmt.excluded
        added = ("runs", "failures", "errors", "degraded", "duration_sum", *BUCKET_COLUMNS)
        set_: dict[str, Any] = {name: rollups.c[name] + ex[name] for name in added}
        set_["duration_max"] = case(
            (rollups.c.duration_max > ex.duration_max, rollups.c.duration_max), else_=ex.duration_max
        )
        return stmt.on_conflict_do_update(
            index_elements=[rollups.c.probe, rollups.c.step, rollups.c.hour], set_=set_
        )

    def runs(self, *, probe: str | None, since: datetime, limit: int) -> list[ProbeResult]:
        """Runs started at or after ``since`` (newest first), optionally of one probe."""
        return self.reads.runs(probe=probe, since=since, limit=limit)

    def _probe_names(self) -> Any:
        """A recursive CTE of the distinct probe names in ``runs``, found by one index seek per name
        (``MIN(probe) WHERE probe > previous``): a loose index scan, so its cost grows with the number
        of probes, not of runs (``SELECT DISTINCT`` reads the whole index)."""
        names = select(func.min(runs.c.probe).label("probe")).cte("probe_names", recursive=True)
        later = runs.alias("later")
        following = select(func.min(later.c.probe)).where(later.c.probe > names.c.probe).scalar_subquery()
        return names.union_all(select(following).where(names.c.probe.is_not(None)))

    def latest_runs(self) -> dict[str, ProbeResult]:
        """The newest stored run of every probe: one index seek per probe, in one query."""
        names = self._probe_names()
        newest = (
            select(runs.c.id)
            .where(runs.c.probe == names.c.probe)
            .order_by(runs.c.started_at.desc(), runs.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        pks = select(newest).where(names.c.probe.is_not(None))
        with self.db.read() as conn:
            rows = conn.execute(select(*RUN_COLUMNS).where(runs.c.id.in_(pks))).all()
        return {row[0]: stored_result(row) for row in rows}

    def latest_by_location(self, *, since: datetime) -> list[LocationRun]:
        """The newest run of each probe from each location, among runs since ``since``."""
        with self.db.read() as conn:
            return latest_by_location(conn, since)

    def recent_runs(self, *, per_probe: int) -> dict[str, list[RunMark]]:
        """The ``per_probe`` newest runs of every probe, newest first, with their steps.

        The probe names come first (one seek per name); the runs then come in one query (per
        :data:`PROBES_PER_QUERY` probes), a ``UNION ALL`` of one newest-first index range per probe,
        and their steps in one query by run key. Nothing grows with the history kept, and no stored
        run is decoded. The statements are built once (:meth:`_recent_query`): on every status read,
        building them cost more CPU than running them.
        """
        if per_probe <= 0:
            return {}
        with self.db.read() as conn:
            probes = list(conn.execute(self._names_query).scalars())
            rows: list[Any] = []
            marks: dict[int, list[StepMark]] = {}
            # One query per PROBES_PER_QUERY probes: SQLite caps a compound SELECT at 500 parts.
            for i in range(0, len(probes), PROBES_PER_QUERY):
                chunk = probes[i : i + PROBES_PER_QUERY]
                params = {"per_probe": per_probe, **{f"p{k}": p for k, p in enumerate(chunk)}}
                found = conn.execute(self._recent_query(len(chunk)), params).all()
                rows += found
                marks.update({row[0]: [] for row in found})
                pks = {"pks": [row[0] for row in found]}
                for pk, name, status, took, code in conn.execute(self._steps_query, pks).all():
                    marks[pk].append(StepMark(name, STATUS[status], float(took), code))
        out: dict[str, list[RunMark]] = {p: [] for p in probes}
        for pk, probe, run_id, started, took, status, failing in sorted(rows, key=lambda r: (-r[3], -r[0])):
            at, state = from_epoch(started), STATUS[status]
            out[probe].append(RunMark(probe, run_id, at, float(took), state, failing, tuple(marks[pk])))
        return out

    @cached_property
    def _names_query(self) -> Any:
        names = self._probe_names()
        return select(names.c.probe).where(names.c.probe.is_not(None))

    @cached_property
    def _steps_query(self) -> Any:
        cols = (steps.c.run_pk, steps.c.name, steps.c.status, steps.c.duration_s, steps.c.http_status)
        pks: Any = bindparam("pks", expanding=True)
        return select(*cols).where(steps.c.run_pk.in_(pks)).order_by(steps.c.run_pk, steps.c.seq)

    def _recent_query(self, n: int) -> Any:
        """The newest ``per_probe`` runs of probes ``p0`` .. ``p<n-1>`` (bound parameters), built once
        per ``n``."""
        built = self._recent_queries
        if n not in built:
            cols = (runs.c.id, runs.c.probe, runs.c.run_id, runs.c.started_at, runs.c.duration_s)
            built[n] = union_all(
                *(
                    select(*cols, runs.c.status, runs.c.failing_step)
                    .where(runs.c.probe == bindparam(f"p{k}"))
                    .order_by(runs.c.started_at.desc(), runs.c.id.desc())
                    .limit(bindparam("per_probe"))
                    .subquery()
                    .select()
                    for k in range(n)
                )
            )
        return built[n]

    def runs_by_id(self, run_ids: Sequence[str]) -> dict[str, ProbeResult]:
        """The stored runs with these ids (unknown ids are left out)."""
        if not run_ids:
            return {}
        q = select(*RUN_COLUMNS).where(runs.c.run_id.in_(list(run_ids)))
        with self.db.read() as conn:
            return {row[2]: stored_result(row) for row in conn.execute(q)}

    def probe_uptime(
        self, *, probes: Sequence[str], windows: Mapping[str, datetime], until: datetime, now: datetime
    ) -> dict[str, dict[str, UptimeRow]]:
        """Run counts per probe (no steps) for each window (non-empty label → start) up to ``until``,
        in one query; by window label, then probe.

        Whole hours come from the hourly rollups, the partial hours at both ends from raw runs, so a
        window is exact while its start is within raw retention. An older start counts its first
        hour whole (hour-aligned, like :meth:`uptime`). The settled hours (all but the newest whole
        one) are read once per window and kept until they change (:mod:`monitor.history.settled`
        says how another writer's late runs are bounded); the rest is read every time.
        """
        if not probes or not windows:
            return {}
        names, t_now = list(probes), to_epoch(now)
        end = to_epoch(until)
        last_whole = hour_bucket(end)
        newest_whole = last_whole - 3600
        totals: dict[str, dict[str, UptimeRow]] = {label: {} for label in windows}
        shape: list[Part] = []
        spans: list[tuple[float, float]] = []
        # Per part: the window it counts for ("": every window with whole hours, as the newest whole
        # hour and the partial hour before ``until`` are the same for all) and the settled key to keep.
        targets: list[tuple[str, Settled | None]] = []
        read: dict[Settled, dict[str, UptimeRow]] = {}
        tokens: dict[Settled, int] = {}

        def add(where: Part, start: float, stop: float, label: str, keep: Settled | None = None) -> None:
            shape.append(where)
            spans.append((start, stop))
            targets.append((label, keep))

        shared: list[str] = []
        for label, since in windows.items():
            start = to_epoch(since)
            hours = self.reads.whole_hours(start, end, t_now)
            if hours is None:  # within one or two partial hours: raw only
                add("raw", start, end, label)
                continue
            first_whole = hours[0]
            if start < first_whole:
                add("raw", start, first_whole, label)
            if first_whole < newest_whole:
                key = (tuple(names), first_whole, newest_whole)
                kept = self.settled.get(key, t_now)
                if kept is None:
                    read[key], tokens[key] = {}, self.settled.begin(key)
                    add("rollup", first_whole, newest_whole, label, key)
                else:
                    totals[label] = dict(kept)
            shared.append(label)
        if shared:
            add("rollup", newest_whole, last_whole, "")
            add("raw", last_whole, end, "")
        with self.db.read() as conn:
            found = conn.execute(self._count_queries.statement(shape), bounds(names, spans)).all()
        for row in found:
            if row[2] is None or int(row[2]) <= 0:
                continue
            label, keep = targets[int(row[0])]
            part = UptimeRow(row[1], None, *nums(row[2:]))
            if keep is not None:
                read[keep][part.probe] = part
            for name in [label] if label else shared:
                seen = totals[name]
                seen[part.probe] = merge(seen[part.probe], part) if part.probe in seen else part
        for key, value in read.items():
            self.settled.put(key, t_now, value, tokens[key])
        return totals

    def renew_settled(self, now: datetime) -> int:
        """Read again the kept settled ranges due for it (:meth:`SettledHours.due`), one query per
        probe set, so that no status read finds them expired. Returns how many were read."""
        t_now = to_epoch(now)
        due = self.settled.due(t_now)
        for probes in {key[0] for key in due}:
            keys = [key for key in due if key[0] == probes]
            tokens = [self.settled.begin(key) for key in keys]
            values: list[dict[str, UptimeRow]] = [{} for _ in keys]
            spans = [(float(first), float(end)) for _, first, end in keys]
            with self.db.read() as conn:
                stmt = self._count_queries.statement(["rollup"] * len(keys))
                found = conn.execute(stmt, bounds(list(probes), spans)).all()
            for row in found:
                if row[2] is not None and int(row[2]) > 0:
                    values[int(row[0])][row[1]] = UptimeRow(row[1], None, *nums(row[2:]))
            for key, value, token in zip(keys, values, tokens, strict=True):
                self.settled.put(key, t_now, value, token)
        return len(due)

    @cached_property
    def _count_queries(self) -> CountQueries:
        return CountQueries()

    def uptime(self, *, since: datetime, until: datetime, now: datetime) -> list[UptimeRow]:
        """Counts per probe (``step`` None) and per step between ``since`` and ``until``
        (:meth:`monitor.history.reads.HistoryReads.uptime` says how)."""
        return self.reads.uptime(since=since, until=until, now=now)

    def good_bad(
        self, *, since: datetime, until: datetime, now: datetime
    ) -> dict[tuple[str, str | None], tuple[int, int]]:
        """``(good, bad)`` run counts per ``(probe, step)`` (step None: the whole run) between
        ``since`` and ``until``, as SLOs count them: good = PASS or DEGRADED, bad = FAIL; ERROR
        and SKIPPED count on neither side.

        The counts are :meth:`uptime`'s (rollups for whole hours, raw rows at the edges). The rollups
        do not count SKIPPED apart from PASS, so skipped runs and steps are counted from raw rows and
        taken out: exact while ``since`` is within raw retention (the SLO config requires it).
        """
        start, end = to_epoch(since), to_epoch(until)
        skipped = Status.SKIPPED.value
        run_q = (
            select(runs.c.probe, func.count())
            .where(runs.c.started_at >= start, runs.c.started_at < end, runs.c.status == skipped)
            .group_by(runs.c.probe)
        )
        step_q = (
            select(steps.c.probe, steps.c.name, func.count())
            .where(steps.c.started_at >= start, steps.c.started_at < end, steps.c.status == skipped)
            .group_by(steps.c.probe, steps.c.name)
        )
        with self.db.read() as conn:
            left_out: dict[tuple[str, str | None], int] = {(p, None): int(n) for p, n in conn.execute(run_q)}
            left_out.update({(p, name): int(n) for p, name, n in conn.execute(step_q)})
        out: dict[tuple[str, str | None], tuple[int, int]] = {}
        for row in self.uptime(since=since, until=until, now=now):
            key = (row.probe, row.step)
            good = row.runs - row.failures - row.errors - left_out.get(key, 0)
            out[key] = (max(good, 0), row.failures)
        return out

    def good_bad_at(
        self, *, since: datetime, until: datetime, location: str
    ) -> dict[tuple[str, str | None], tuple[int, int]]:
        """:meth:`good_bad` of the runs made from ``location`` only, from raw rows (rollups do not
        keep the location): meant for short windows, where the raw rows are few."""
        start, end = to_epoch(since), to_epoch(until)
        good, fail = (Status.PASS.value, Status.DEGRADED.value), Status.FAIL.value
        where = (runs.c.started_at >= start, runs.c.started_at < end, runs.c.location == location)
        run_q = (
            select(runs.c.probe, literal(None).label("step"), runs.c.status, func.count())
            .where(*where)
            .group_by(runs.c.probe, runs.c.status)
        )
        step_q = (
            select(steps.c.probe, steps.c.name, steps.c.status, func.count())
            .select_from(steps.join(runs, steps.c.run_pk == runs.c.id))
            .where(*where)
            .group_by(steps.c.probe, steps.c.name, steps.c.status)
        )
        out: dict[tuple[str, str | None], tuple[int, int]] = {}
        with self.db.read() as conn:
            for probe, step, status, n in [*conn.execute(run_q), *conn.execute(step_q)]:
                g, b = out.get((probe, step), (0, 0))
                if status in good:
                    g += int(n)
                elif status == fail:
                    b += int(n)
                out[(probe, step)] = (g, b)
        return out

    def latency_histograms(self, *, since: datetime) -> list[LatencyHistogram]:
        """The latency buckets of every probe and step from the hour holding ``since`` on, summed:
        one range of the rollups' primary key per probe and step, whatever the window's length.
        Hours with empty buckets (folded before the buckets existed) are left out, so they do not
        make the history look longer than it is."""
        buckets = [rollups.c[name] for name in BUCKET_COLUMNS]
        q = (
            select(
                rollups.c.probe,
                rollups.c.step,
                func.min(rollups.c.hour),
                *(func.sum(b) for b in buckets),
            )
            .where(rollups.c.hour >= hour_bucket(to_epoch(since)), reduce(operator.add, buckets) > 0)
            .group_by(rollups.c.probe, rollups.c.step)
        )
        with self.db.read() as conn:
            return [
                LatencyHistogram(r[0], r[1], from_epoch(float(r[2])), tuple(int(n or 0) for n in r[3:]))
                for r in conn.execute(q)
            ]

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
        self.settled.pruned(hour_bucket(t - self.rollup_retention_s))
        return {"runs": int(n_runs), "rollups": int(n_roll)}
