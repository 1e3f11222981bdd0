"""CLI commands ``synthmon history``, ``uptime``, ``silence`` and ``migrate`` (``register(subparsers)``).

They read only what they need from the config file (``--config PATH``, else ``$SYNTHMON_CONFIG``,
else ``./config.yaml``): the ``store:`` section, interpolated, and the probe names. So they work on
a machine without the probes' secrets (``SYNTHMON_API_KEY``), and a config broken elsewhere does
not keep on-call from reading history. history, uptime and silence open the store without
migrating it and refuse, with a clear message, a store that is missing or not at this synthmon's
schema: ``synthmon migrate`` (or the daemon, at start-up) creates and upgrades it.

A relative SQLite path is resolved against the working directory, as the daemon resolves it;
history and uptime name the store they read (the absolute file for SQLite) in a ``store:`` line:
the first output line for tables, on stderr for JSON and CSV (so pipelines get clean data).

Exit codes: 0 done, 1 nothing matched (``silence clear``), 2 bad config, unknown probe or
unusable store.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError

from monitor.history.config import StoreConfig
from monitor.history.migrate import SchemaError, head_revision
from monitor.history.sqlstore import ALL_PROBES, SqlStore, sqlite_path
from monitor.history.timeutil import DurationError, format_duration, parse_duration
from probes.base import SystemClock

EXIT_OK, EXIT_EMPTY, EXIT_CONFIG = 0, 1, 2
UPTIME_WINDOWS = ("1h", "24h", "7d", "30d")


@dataclass(frozen=True, slots=True)
class StoreSection:
    """What the store commands need from the config file."""

    store: StoreConfig
    probes: tuple[str, ...]

    def label(self) -> str:
        """Which store this is, safe to print: the absolute file for SQLite, else the masked URL."""
        path = sqlite_path(self.store.url)
        return f"sqlite:///{path}" if path is not None else self.store.safe_url()


def load_store_section(path: str, env: Mapping[str, str] | None = None) -> StoreSection:
    """The interpolated, validated ``store:`` section of the config file at ``path`` and its probe
    names, without validating (or needing the secrets of) anything else.

    Raises ``monitor.config.ConfigError`` naming the file and field.
    """
    from monitor.config import ConfigError, interpolate  # the config module owns the ${VAR} syntax

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror}", source=path) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", source=path) from None
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping (environment:, probes:, ...)", source=path)
    try:
        section = interpolate(data.get("store") or {}, os.environ if env is None else env, ("store",))
        store = StoreConfig.model_validate(section)
    except ConfigError as exc:
        raise ConfigError(exc.reason, path=exc.path, source=path) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["store", *(str(p) for p in first["loc"])])
        raise ConfigError(first["msg"], path=where, source=path) from None
    probes = data.get("probes") or []
    names = tuple(str(p["name"]) for p in probes if isinstance(p, dict) and "name" in p)
    return StoreSection(store=store, probes=names)


def _section(args: argparse.Namespace, err: TextIO) -> StoreSection | None:
    from monitor.cli import config_path  # the CLI owns --config resolution
    from monitor.config import ConfigError

    try:
        return load_store_section(config_path(args))
    except ConfigError as exc:
        print(f"synthmon: invalid config: {exc}", file=err)
        return None


def open_store(section: StoreSection, err: TextIO, *, migrate: bool = False) -> SqlStore | None:
    cfg = section.store
    opener = SqlStore.open if migrate else SqlStore.open_existing
    try:
        return opener(
            cfg.url, retention_days=cfg.retention_days, rollup_retention_days=cfg.rollup_retention_days
        )
    except SchemaError as exc:
        print(f"synthmon: store {section.label()}: {exc}", file=err)
    except ArgumentError:
        # The parser's message may quote the URL, password and all.
        print("synthmon: invalid config: store.url: not a valid database URL", file=err)
    except Exception as exc:  # unreachable database: one line naming the (masked) store, not a traceback
        print(f"synthmon: cannot open store {section.label()}: {type(exc).__name__}", file=err)
    return None


def register(subparsers: Any) -> None:
    """Add ``history``, ``uptime`` and ``silence`` to the ``synthmon`` parser."""
    from monitor.cli import add_config_option

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

    s = subparsers.add_parser(
        "silence",
        help="hold notifications for a probe (probing continues): add (default), list, clear",
    )
    add_config_option(s)
    s.add_argument("action", nargs="?", choices=("add", "list", "clear"), default="add")
    s.add_argument("--probe", help="probe name, or * for all (add, clear)")
    s.add_argument("--for", dest="duration", default="1h", help="how long (add; default 1h)")
    s.add_argument("--reason", default="", help="why (add; required)")
    s.add_argument("--id", type=int, help="silence id (clear)")
    s.add_argument("--all", action="store_true", help="list expired silences too")
    s.set_defaults(func=cmd_silence)

    m = subparsers.add_parser(
        "migrate",
        help="create the store or bring its schema up to this synthmon (the daemon does this at start-up)",
    )
    add_config_option(m)
    m.set_defaults(func=cmd_migrate)


#: ``fn(args, store, section, out, err) -> exit code``: a command body run with an open store.
StoreCommand = Callable[[argparse.Namespace, SqlStore, StoreSection, TextIO, TextIO], int]


def _with_store(fn: StoreCommand, *, migrate: bool = False) -> Callable[..., int]:
    def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
        # Resolved per call, not at import: tests and wrappers may swap sys.stdout.
        out = out or sys.stdout
        err = err or sys.stderr
        section = _section(args, err)
        if section is None:
            return EXIT_CONFIG
        store = open_store(section, err, migrate=migrate)
        if store is None:
            return EXIT_CONFIG
        try:
            return fn(args, store, section, out, err)
        finally:
            store.close()

    run.__doc__ = fn.__doc__
    return run


def _header(args: argparse.Namespace, section: StoreSection, out: TextIO, err: TextIO) -> None:
    """Name the store read: a relative SQLite path makes "which file?" a real question."""
    print(f"store: {section.label()}", file=out if args.format == "table" else err)


def _history(
    args: argparse.Namespace, store: SqlStore, section: StoreSection, out: TextIO, err: TextIO
) -> int:
    """``synthmon history``: runs newest first, as a table, JSON lines or CSV."""
    try:
        since = SystemClock().now() - timedelta(seconds=parse_duration(args.since))
    except DurationError as exc:
        print(f"synthmon: --since: {exc}", file=err)
        return EXIT_CONFIG
    _header(args, section, out, err)
    runs = store.runs(probe=args.probe, since=since, limit=args.limit)
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
                "status": r.status.value,
                "duration_s": f"{r.duration_s:.3f}",
                "failing_step": step.name if step else "",
                "http_status": str(step.http_status) if step and step.http_status is not None else "",
                "error_class": (step.error_class or "") if step else "",
                "run_id": r.run_id,
            }
        )
    if args.format == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=list(rows[0]) if rows else ["started_at"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
        out.write(buf.getvalue())
        return EXIT_OK
    _table(
        out, rows, ["started_at", "probe", "status", "duration_s", "failing_step", "http_status", "run_id"]
    )
    return EXIT_OK


def _uptime(
    args: argparse.Namespace, store: SqlStore, section: StoreSection, out: TextIO, err: TextIO
) -> int:
    """``synthmon uptime``: share of non-failing checked runs per probe and step, per window."""
    _header(args, section, out, err)
    now = SystemClock().now()
    table: dict[tuple[str, str], dict[str, str]] = {}
    data: dict[str, Any] = {}
    for window in UPTIME_WINDOWS:
        since = now - timedelta(seconds=parse_duration(window))
        for row in store.uptime(since=since, until=now, now=now):
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
    _table(out, rows, ["probe", "step", *UPTIME_WINDOWS])
    return EXIT_OK


def _silence(
    args: argparse.Namespace, store: SqlStore, section: StoreSection, out: TextIO, err: TextIO
) -> int:
    """``synthmon silence [add|list|clear]``: stored silences hold notifications, never probing."""
    now = SystemClock().now()
    if args.action == "list":
        silences = store.silences(active_at=None if args.all else now)
        rows = [
            {
                "id": str(s.id),
                "probe": s.probe,
                "until": s.ends_at.strftime("%Y-%m-%d %H:%M UTC"),
                "cleared": s.cleared_at.strftime("%Y-%m-%d %H:%M UTC") if s.cleared_at else "",
                "by": s.created_by,
                "reason": s.reason,
            }
            for s in silences
        ]
        _table(out, rows, ["id", "probe", "until", "cleared", "by", "reason"])
        return EXIT_OK
    if args.action == "clear":
        if args.id is None and not args.probe:
            print("synthmon: silence clear needs --id N or --probe NAME", file=err)
            return EXIT_CONFIG
        n = store.clear_silences(now=now, silence_id=args.id, probe=args.probe)
        print(f"cleared {n} silence(s)", file=out)
        return EXIT_OK if n else EXIT_EMPTY
    if not args.probe or not args.reason.strip():
        print("synthmon: silence needs --probe NAME (or *) and --reason TEXT", file=err)
        return EXIT_CONFIG
    if args.probe != ALL_PROBES and args.probe not in section.probes:
        # A typo would store a silence that holds nothing, and the page would go out anyway.
        known = ", ".join(section.probes) or "(none)"
        print(f"synthmon: unknown probe {args.probe!r}; configured: {known} (or * for all)", file=err)
        return EXIT_CONFIG
    try:
        seconds = parse_duration(args.duration)
    except DurationError as exc:
        print(f"synthmon: --for: {exc}", file=err)
        return EXIT_CONFIG
    if seconds <= 0:
        print("synthmon: --for must be positive", file=err)
        return EXIT_CONFIG
    s = store.add_silence(
        probe=args.probe,
        starts_at=now,
        ends_at=now + timedelta(seconds=seconds),
        reason=args.reason.strip(),
        created_by=getpass.getuser(),
    )
    print(
        f"silence #{s.id}: notifications for {s.probe} held for {format_duration(seconds)} "
        f"(until {s.ends_at:%Y-%m-%d %H:%M} UTC); probing continues",
        file=out,
    )
    return EXIT_OK


def _table(out: TextIO, rows: list[dict[str, str]], columns: list[str]) -> None:
    if not rows:
        out.write("(nothing)\n")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    out.write("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip() + "\n")
    for r in rows:
        out.write("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip() + "\n")


def _migrate(
    args: argparse.Namespace, store: SqlStore, section: StoreSection, out: TextIO, err: TextIO
) -> int:
    """``synthmon migrate``: the store exists and is at this synthmon's schema (opening did it)."""
    print(f"store {section.label()}: schema at revision {head_revision()}", file=out)
    return EXIT_OK


cmd_history = _with_store(_history)
cmd_uptime = _with_store(_uptime)
cmd_silence = _with_store(_silence)
cmd_migrate = _with_store(_migrate, migrate=True)
