"""The SQL of the run counts :meth:`monitor.history.sqlstore.SqlHistoryStore.probe_uptime` adds up,
built once per shape.

A status read runs the same few ``UNION ALL`` shapes with new bounds every time; building the
SQLAlchemy statement cost more CPU than the database spent on it. So each shape (which parts, raw
runs or rollups) is built once with bound parameters (``names`` for the probes, ``start<i>`` and
``end<i>`` for part ``i``) and reused; SQLAlchemy's compiled cache does the rest. Each row starts
with the index of its part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import bindparam, case, func, literal, select, union_all

from monitor.store.schema import rollups, runs
from probes.base import Status

#: Where one part of a counts query reads: raw runs or hourly rollups.
Part = Literal["raw", "rollup"]


def counts(status_col: Any, duration_col: Any) -> list[Any]:
    """Runs, failures, errors, degraded, duration sum and max of the rows grouped, as columns."""
    return [
        func.count(),
        func.coalesce(func.sum(case((status_col == Status.FAIL.value, 1), else_=0)), 0),
        func.coalesce(func.sum(case((status_col == Status.ERROR.value, 1), else_=0)), 0),
        func.coalesce(func.sum(case((status_col == Status.DEGRADED.value, 1), else_=0)), 0),
        func.coalesce(func.sum(duration_col), 0.0),
        func.coalesce(func.max(duration_col), 0.0),
    ]


def rollup_counts() -> list[Any]:
    """:func:`counts` of the rollup rows grouped (their sums, the longest run)."""
    sums = ("runs", "failures", "errors", "degraded", "duration_sum")
    return [*(func.sum(rollups.c[name]) for name in sums), func.max(rollups.c.duration_max)]


def _part(i: int, where: Part) -> Any:
    names: Any = bindparam("names", expanding=True)
    start: Any = bindparam(f"start{i}")
    end: Any = bindparam(f"end{i}")
    if where == "raw":
        return (
            select(literal(i), runs.c.probe, *counts(runs.c.status, runs.c.duration_s))
            .where(runs.c.probe.in_(names), runs.c.started_at >= start, runs.c.started_at < end)
            .group_by(runs.c.probe)
        )
    return (
        select(literal(i), rollups.c.probe, *rollup_counts())
        .where(rollups.c.probe.in_(names), rollups.c.step == "")
        .where(rollups.c.hour >= start, rollups.c.hour < end)
        .group_by(rollups.c.probe)
    )


class CountQueries:
    """Counts statements by shape: part index, probe and the six :func:`counts` per row."""

    def __init__(self) -> None:
        self._built: dict[tuple[Part, ...], Any] = {}

    def statement(self, shape: Sequence[Part]) -> Any:
        """The ``UNION ALL`` of ``shape``'s parts (a handful of shapes exist: kept for ever)."""
        key = tuple(shape)
        stmt = self._built.get(key)
        if stmt is None:
            parts = [_part(i, where) for i, where in enumerate(key)]
            stmt = self._built[key] = union_all(*parts) if len(parts) > 1 else parts[0]
        return stmt


def bounds(names: Sequence[str], spans: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """The parameters of a counts statement: the probes and each part's ``[start, end)``."""
    params: dict[str, Any] = {"names": list(names)}
    for i, (start, end) in enumerate(spans):
        params[f"start{i}"], params[f"end{i}"] = start, end
    return params
