"""CLI command ``synthmon locations``: each probe as each location sees it, from the store.

Reads the newest run of every probe from every location (history) and each location's incident
view (alerting): a location failing alone (its own network) shows here as ``(failing …)`` in its
column without any page. Like ``synthmon history`` it opens the store without migrating it and
names the store it read.

Exit codes: 0 done, 2 bad config or unusable store.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TextIO

from monitor.cliutil import EXIT_OK, StoreSection, add_config_option, print_table, with_store

if TYPE_CHECKING:  # annotations only: the handler imports what it runs (fast --help)
    from monitor.store.database import Database


def register(subparsers: Any) -> None:
    """Add ``locations`` to the ``synthmon`` parser."""
    p = subparsers.add_parser("locations", help="each probe's latest status from each location")
    add_config_option(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_locations)


def _locations(
    args: argparse.Namespace, db: Database, section: StoreSection, out: TextIO, err: TextIO
) -> int:
    """``synthmon locations``: a probe x location table (or the ``/api/v1/locations`` JSON)."""
    from monitor.alerting.sqlstore import SqlAlertingStore
    from monitor.history.sqlstore import SqlHistoryStore
    from monitor.location import DEFAULT_LOCATION
    from monitor.locations_view import LOOKBACK_S, build, locations_json, table_rows
    from probes.base import SystemClock

    now = SystemClock().now()
    runs = SqlHistoryStore(db).latest_by_location(since=now - timedelta(seconds=LOOKBACK_S))
    alerting = SqlAlertingStore(db)
    here = os.environ.get("SYNTHMON_LOCATION", "").strip() or DEFAULT_LOCATION
    snap = build(now, here, runs, alerting.location_views(), alerting.location_heartbeats())
    print(f"store: {section.label()}", file=out if args.format == "table" else err)
    if args.format == "json":
        out.write(json.dumps(locations_json(snap), indent=2) + "\n")
        return EXIT_OK
    columns, rows = table_rows(snap)
    print_table(out, rows, columns)
    gone = [p.name for p in snap.places if p.live is False]
    if gone:
        print(f"not live (no heartbeat recently): {', '.join(gone)}", file=out)
    return EXIT_OK


cmd_locations = with_store(_locations)
