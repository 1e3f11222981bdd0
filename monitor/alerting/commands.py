"""CLI command ``synthmon silence [add|list|clear]`` (``register(subparsers)``).

Reads only the ``store:`` section and the probe names from the config file (see
:mod:`monitor.cliutil`) and never migrates the store.

Exit codes: 0 done, 1 nothing matched (``silence clear``), 2 bad config, unknown probe or unusable
store.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TextIO

from monitor.cliutil import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    StoreSection,
    add_config_option,
    print_table,
    with_store,
)

if TYPE_CHECKING:  # annotations only: the handler imports what it runs (fast --help)
    from monitor.store.database import Database

#: ``silence clear`` that matched nothing.
EXIT_EMPTY = EXIT_FAILED


def register(subparsers: Any) -> None:
    """Add ``silence`` to the ``synthmon`` parser."""
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


def _silence(args: argparse.Namespace, db: Database, section: StoreSection, out: TextIO, err: TextIO) -> int:
    """``synthmon silence [add|list|clear]``: stored silences hold notifications, never probing."""
    import getpass

    from monitor.alerting.silences import ALL_PROBES
    from monitor.alerting.sqlstore import SqlAlertingStore
    from probes.base import DurationError, SystemClock, format_duration, parse_duration

    now = SystemClock().now()
    store = SqlAlertingStore(db)
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
        print_table(out, rows, ["id", "probe", "until", "cleared", "by", "reason"])
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


cmd_silence = with_store(_silence)
