"""The statements the history reads run (``synthmon history`` and ``uptime``, the API's runs and
uptime), built with SQLAlchemy Core: the one place their SQL is written.

The read commands on SQLite run the same statements without SQLAlchemy (importing it is most of what
such a command costs): :mod:`monitor.history.sqltext` holds their SQL as SQLite compiles it, generated
from here by ``python -m monitor.history.readsql`` (``make sqltext``), and a test compares the two so
they cannot drift. Every statement takes named parameters only (listed in :data:`READS`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select

from monitor.history.countsql import counts, rollup_counts
from monitor.store.schema import rollups, runs, steps

#: What a stored run is rebuilt from (:func:`monitor.history.rows.stored_result`, by position).
RUN_COLUMNS = (
    runs.c.probe,
    runs.c.kind,
    runs.c.run_id,
    runs.c.environment,
    runs.c.location,
    runs.c.started_at,
    runs.c.duration_s,
    runs.c.status,
    runs.c.detail,
)


def _runs(*, one_probe: bool) -> Any:
    """Runs started at or after ``since``, newest first, at most ``limit`` (of ``probe`` only)."""
    q = select(*RUN_COLUMNS).where(runs.c.started_at >= bindparam("since"))
    if one_probe:
        q = q.where(runs.c.probe == bindparam("probe"))
    return q.order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(bindparam("limit"))


def _raw_run_counts() -> Any:
    """:func:`counts` per probe of the runs started in ``[start, end)``."""
    return (
        select(runs.c.probe, *counts(runs.c.status, runs.c.duration_s))
        .where(runs.c.started_at >= bindparam("start"), runs.c.started_at < bindparam("end"))
        .group_by(runs.c.probe)
    )


def _raw_step_counts() -> Any:
    """:func:`counts` per probe and step of the steps of runs started in ``[start, end)``."""
    return (
        select(steps.c.probe, steps.c.name, *counts(steps.c.status, steps.c.duration_s))
        .where(steps.c.started_at >= bindparam("start"), steps.c.started_at < bindparam("end"))
        .group_by(steps.c.probe, steps.c.name)
    )


def _rollup_counts() -> Any:
    """The rollups' counts per probe and step (``""``: the whole run) of the hours in
    ``[first, end)``."""
    return (
        select(rollups.c.probe, rollups.c.step, *rollup_counts())
        .where(rollups.c.hour >= bindparam("first"), rollups.c.hour < bindparam("end"))
        .group_by(rollups.c.probe, rollups.c.step)
    )


#: The read statements by name: what :class:`monitor.history.reads.HistoryReads` asks a fetcher for.
READS: dict[str, Callable[[], Any]] = {
    "runs": lambda: _runs(one_probe=False),
    "probe_runs": lambda: _runs(one_probe=True),
    "raw_run_counts": _raw_run_counts,
    "raw_step_counts": _raw_step_counts,
    "rollup_counts": _rollup_counts,
}


def sqlite_text(name: str) -> tuple[str, dict[str, Any]]:
    """Statement ``name`` as SQLAlchemy compiles it for SQLite: its SQL with ``:name`` parameters
    (which the sqlite3 module binds from a dict) and the values of the parameters SQLAlchemy binds
    itself (the statuses counted, the constants of ``CASE``, ...)."""
    from sqlalchemy.dialects import sqlite

    compiled = READS[name]().compile(dialect=sqlite.dialect(paramstyle="named"))
    fixed = {compiled.bind_names[b]: b.value for b in compiled.binds.values() if not b.required}
    return str(compiled), fixed


def generated_module() -> str:
    """The source of :mod:`monitor.history.sqltext` for the statements in :data:`READS`."""
    lines = [
        '"""The SQLite text of the history reads, GENERATED from :mod:`monitor.history.readsql`',
        "(``make sqltext``); do not edit. A test checks it matches what SQLAlchemy compiles.",
        '"""',
        "",
        "from typing import Any",
        "",
        "#: Statement name -> (SQL with named parameters, the values of the fixed parameters).",
        "SQLITE: dict[str, tuple[str, dict[str, Any]]] = {",
    ]
    for name in READS:
        sql, fixed = sqlite_text(name)
        lines.append(f"    {name!r}: (")
        lines += [f"        {line!r}" for line in sql.splitlines(keepends=True)]
        lines[-1] += ","
        lines.append(f"        {fixed!r},")
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


#: Where the generated module lives.
GENERATED = Path(__file__).with_name("sqltext.py")

if __name__ == "__main__":
    GENERATED.write_text(generated_module())
    print(f"wrote {GENERATED}", file=sys.stderr)
