"""The history reads of ``synthmon history`` and ``uptime``: which rows to ask for and how to add them
up, apart from how the statements are run.

The same reads serve the daemon (through SQLAlchemy, :class:`monitor.history.sqlstore.SqlHistoryStore`)
and the read commands on SQLite (through the sqlite3 module, :mod:`monitor.history.sqlitereads`), so
this module imports neither: it names the statements of :data:`monitor.history.readsql.READS` and
hands them with their parameters to a :data:`Fetch`. Errors are the fetcher's: SQLAlchemy's through
the daemon's store, ``sqlite3.Error`` on the commands' path (neither is caught here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from monitor.history.base import UptimeRow
from monitor.history.rows import hour_bucket, stored_result
from monitor.results import ProbeResult
from monitor.store.epoch import to_epoch

#: One read: the name of a statement in :data:`monitor.history.readsql.READS` and its parameters.
Read = tuple[str, Mapping[str, Any]]

#: ``fetch(reads) -> rows of each``: runs the reads in one read transaction, rows as sequences.
Fetch = Callable[[Sequence[Read]], list[list[Sequence[Any]]]]


def merge(a: UptimeRow, b: UptimeRow) -> UptimeRow:
    """Counts of two disjoint parts of one window."""
    return UptimeRow(
        a.probe,
        a.step,
        a.runs + b.runs,
        a.failures + b.failures,
        a.errors + b.errors,
        a.degraded + b.degraded,
        a.duration_sum + b.duration_sum,
        max(a.duration_max, b.duration_max),
    )


def nums(row: Sequence[Any]) -> tuple[int, int, int, int, float, float]:
    """The six counts of a counts row as numbers (drivers hand back Decimal or int sums)."""
    return (int(row[0]), int(row[1]), int(row[2]), int(row[3]), float(row[4]), float(row[5]))


class HistoryReads:
    """Runs and uptime counts read through ``fetch`` (see module docstring)."""

    def __init__(self, fetch: Fetch, *, retention_days: int = 30) -> None:
        self.fetch = fetch
        self.retention_s = retention_days * 86400.0

    def runs(self, *, probe: str | None, since: datetime, limit: int) -> list[ProbeResult]:
        """Runs started at or after ``since`` (newest first), optionally of one probe."""
        params: dict[str, Any] = {"since": to_epoch(since), "limit": limit}
        if probe is not None:
            params["probe"] = probe
        [rows] = self.fetch([("probe_runs" if probe is not None else "runs", params)])
        return [stored_result(row) for row in rows]

    def uptime(self, *, since: datetime, until: datetime, now: datetime) -> list[UptimeRow]:
        """Counts per probe (``step`` None) and per step between ``since`` and ``until``, in one
        read transaction.

        Windows inside raw retention are exact: the whole hours in them are read from the hourly
        rollups (folded in the same transaction as the runs, so they agree with the raw rows), only
        the partial hours at either edge from raw rows, so a 30-day window reads about 720 rollup
        rows per probe and step instead of every run. Windows reaching past raw retention come from
        the rollups alone (hour-aligned).
        """
        start, end = to_epoch(since), to_epoch(until)
        if start < to_epoch(now) - self.retention_s:
            return self.counts(self.rollups(start, end))
        hours = self.whole_hours(start, end, to_epoch(now))
        if hours is None:
            return self.counts(self.raw(start, end))  # no whole hour in it: raw rows are few
        first, last = hours
        return self.counts([*self.raw(start, first), *self.rollups(first, last), *self.raw(last, end)])

    def counts(self, reads: Sequence[Read]) -> list[UptimeRow]:
        """The counts ``reads`` (of :meth:`raw` and :meth:`rollups`, disjoint time ranges) add up to
        per probe and step, in one read transaction."""
        merged: dict[tuple[str, str | None], UptimeRow] = {}
        for (name, _), rows in zip(reads, self.fetch(reads), strict=True):
            for row in rows:
                if name == "raw_run_counts":
                    part = UptimeRow(row[0], None, *nums(row[1:]))
                elif name == "raw_step_counts":
                    part = UptimeRow(row[0], row[1], *nums(row[2:]))
                else:  # rollups: step "" is the whole run
                    part = UptimeRow(row[0], row[1] or None, *nums(row[2:]))
                key = (part.probe, part.step)
                merged[key] = merge(merged[key], part) if key in merged else part
        return sorted(merged.values(), key=lambda u: (u.probe, u.step or ""))

    def whole_hours(self, start: float, end: float, now: float) -> tuple[int, int] | None:
        """The whole hours ``[first, last)`` of a window to read from the rollups, or None when it
        holds none (raw rows only). Raw rows cover the partial hours at either edge; a start past raw
        retention counts its first hour whole, as there are no raw rows left to read it from."""
        last = hour_bucket(end)
        first = hour_bucket(start) if start % 3600 == 0 else hour_bucket(start) + 3600
        if first >= last:
            return None
        if start < now - self.retention_s:
            first = hour_bucket(start)
        return first, last

    @staticmethod
    def raw(start: float, end: float) -> list[Read]:
        """The reads of the counts in ``[start, end)`` from raw runs and steps."""
        span = {"start": start, "end": end}
        return [("raw_run_counts", span), ("raw_step_counts", span)]

    @staticmethod
    def rollups(start: float, end: float) -> list[Read]:
        """The reads of the counts of the hours from the one holding ``start`` to ``end``, from the
        hourly rollups."""
        return [("rollup_counts", {"first": hour_bucket(start), "end": end})]
