"""CLI commands ``synthmon history``, ``uptime`` and ``migrate`` (``register(subparsers)``).

They read only the ``store:`` section and the probe names from the config file (see
:mod:`monitor.cliutil`). history and uptime open the store without migrating it and name the store
they read (the absolute file for SQLite) in a ``store:`` line: the first output line for tables, on
stderr for JSON and CSV (so pipelines get clean data). ``synthmon migrate`` (or the daemon, at
start-up) creates and upgrades the store.

history and uptime run :class:`monitor.history.reads.HistoryReads`: on SQLite through the sqlite3
module (:mod:`monitor.history.sqlitereads`; SQLAlchemy's import alone would be most of their time),
on PostgreSQL through the daemon's SQLAlchemy store (the network round trips dominate there).

Exit codes: 0 done, 2 bad config or unusable store.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TextIO

from monitor.cliutil import (
    EXIT_CONFIG,
    EXIT_OK,
    StoreSection,
    add_config_option,
    open_or_report,
    print_table,
    store_section,
    with_store,
)

if TYPE_CHECKING:  # annotations only: the handlers import what they run (fast --help)
    from monitor.history.reads import HistoryReads
    from monitor.store.database import Database

UPTIME_WINDOWS = ("1h", "24h", "7d", "30d")


def register(subparsers: Any) -> None:
    """Add ``history``, ``uptime`` and ``migrate`` to the ``synthmon`` parser."""
    h = subparsers.add_parser("history", help="recent runs from the store")
    add_config_option(h)
    h.add_argument("--probe", help="only this probe")
    h.add_argument("--since", default="24h", help="how far back (e.g. 30m, 24h, 7d; default 24h)")
    h.add_argument("--limit", type=int, default=200)
    h.add_argument("--format", choices=("table", "json", "csv"), default="table")
    h.set_defaults(func=cmd_history)

    u = subparsers.add_parser("uptime", help="uptime per probe and step over 1h/24h/7d/30d")
    add_config_option(u)
    u.add_argument("--probe", help="only this probe")
    u.add_argument("--format", choices=("table", "json"), default="table")
    u.set_defaults(func=cmd_uptime)

    m = subparsers.add_parser(
        "migrate",
        help="create the store or bring its schema up to this synthmon (the daemon does this at start-up)",
    )
    add_config_option(m)
    m.set_defaults(func=cmd_migrate)


def _header(args: argparse.Namespace, section: StoreSection, out: TextIO, err: TextIO) -> None:
    """Name the store read: a relative SQLite path makes "which file?" a real question."""
    print(f"store: {section.label()}", file=out if args.format == "table" else err)


def open_reads(section: StoreSection, err: TextIO) -> tuple[HistoryReads, Callable[[], None]] | None:
    """The history reads of the store and how to close it, or None after one line on ``err``."""
    path = section.sqlite_file()
    if path is not None:
        from monitor.history.sqlitereads import SqliteReads

        lite = open_or_report(section, err, lambda _url: SqliteReads.open(path))
        if lite is None:
            return None
        return lite.history(retention_days=section.store.retention_days), lite.close
    from monitor.history.sqlstore import SqlHistoryStore
    from monitor.store.database import Database

    db = open_or_report(section, err, Database.open_existing)
    if db is None:
        return None
    return SqlHistoryStore(db, retention_days=section.store.retention_days).reads, db.close


#: ``fn(args, reads, section, out, err) -> exit code``: a read command run on an open store.
ReadCommand = Callable[[argparse.Namespace, "HistoryReads", StoreSection, TextIO, TextIO], int]


def with_reads(fn: ReadCommand) -> Callable[..., int]:
    """A command handler that loads the store section, opens the store's history reads (without
    SQLAlchemy on SQLite), runs ``fn`` and closes the store."""

    def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
        # Resolved per call, not at import: tests and wrappers may swap sys.stdout.
        out = out or sys.stdout
        err = err or sys.stderr
        section = store_section(args, err)
        if section is None:
            return EXIT_CONFIG
        opened = open_reads(section, err)
        if opened is None:
            return EXIT_CONFIG
        reads, close = opened
        try:
            return fn(args, reads, section, out, err)
        finally:
            close()

    run.__doc__ = fn.__doc__
    return run


def _history(
    args: argparse.Namespace, reads: HistoryReads, section: StoreSection, out: TextIO, err: TextIO
) -> int:
    """``synthmon history``: runs newest first, as a table, JSON lines or CSV."""
    from probes.base import DurationError, SystemClock, parse_duration

    try:
        since = SystemClock().now() - timedelta(seconds=parse_duration(args.since))
    except DurationError as exc:
        print(f"synthmon: --since: {exc}", file=err)
        return EXIT_CONFIG
    _header(args, section, out, err)
    runs = reads.runs(probe=args.probe, since=since, limit=args.limit)
    if args.format == "json":
        for r in runs:
            out.write(json.dumps(r.to_dict()) + "\n")
        return EXIT_OK
    rows = []
    for r in runs:
        step = r.failing_step
        rows.append(
            {
                "started_at": r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                "probe": r.probe,
                "location": r.location,
                "status": r.status.value,
                "duration_s": f"{r.duration_s:.3f}",
                "failing_step": step.name if step else "",
                "http_status": str(step.http_status) if step and step.http_status is not None else "",
                "error_class": (step.error_class or "") if step else "",
                "run_id": r.run_id,
            }
        )
    if args.format == "csv":
        import csv

        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=list(rows[0]) if rows else ["started_at"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
        out.write(buf.getvalue())
        return EXIT_OK
    print_table(
        out,
        rows,
        ["started_at", "probe", "location", "status", "duration_s", "failing_step", "http_status", "run_id"],
    )
    return EXIT_OK


def _uptime(
    args: argparse.Namespace, reads: HistoryReads, section: StoreSection, out: TextIO, err: TextIO
) -> int:
    """``synthmon uptime``: share of non-failing checked runs per probe and step, per window."""
    from probes.base import SystemClock, parse_duration

    _header(args, section, out, err)
    now = SystemClock().now()
    table: dict[tuple[str, str], dict[str, str]] = {}
    data: dict[str, Any] = {}
    for window in UPTIME_WINDOWS:
        since = now - timedelta(seconds=parse_duration(window))
        for row in reads.uptime(since=since, until=now, now=now):
            if args.probe and row.probe != args.probe:
                continue
            key = (row.probe, row.step or "(run)")
            value = row.uptime
            table.setdefault(key, {"probe": key[0], "step": key[1]})[window] = (
                f"{value * 100:.2f}%" if value is not None else "-"
            )
            data.setdefault(f"{key[0]}/{key[1]}", {})[window] = {
                "uptime": value,
                "runs": row.runs,
                "failures": row.failures,
                "errors": row.errors,
            }
    if args.format == "json":
        out.write(json.dumps(data, indent=2) + "\n")
        return EXIT_OK
    rows = [
        {"probe": k[0], "step": k[1], **{w: v.get(w, "-") for w in UPTIME_WINDOWS}}
        for k, v in sorted(table.items())
    ]
    print_table(out, rows, ["probe", "step", *UPTIME_WINDOWS])
    return EXIT_OK


def _migrate(args: argparse.Namespace, db: Database, section: StoreSection, out: TextIO, err: TextIO) -> int:
    """``synthmon migrate``: the store exists and is at this synthmon's schema (opening did it)."""
    from monitor.store.migrate import head_revision

    print(f"store {section.label()}: schema at revision {head_revision()}", file=out)
    return EXIT_OK


cmd_history = with_reads(_history)
cmd_uptime = with_reads(_uptime)
cmd_migrate = with_store(_migrate, migrate=True)
