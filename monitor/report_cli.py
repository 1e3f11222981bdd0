"""``synthmon report``: the Markdown run report (:mod:`monitor.report`) from history, or from a run now.

Two sources for the current run:

- default: the latest stored run of each configured probe, compared with the stored run before it.
  Like ``synthmon history``, this reads only the config's ``store:`` section (no API key needed)
  and never migrates the store;
- ``--run``: run the probes now through the daemon's ``run_once`` (as ``synthmon once`` does; the
  config and its secrets are needed), compared with the latest stored run of each. The fresh
  results are not written to the store (``synthmon once --record`` does that). When the store cannot be
  opened, the report says there is no previous run and stderr says why.

The report goes to stdout or ``--output PATH``. It is passed through the secret masker before it is
written, so even a key echoed in a body excerpt never reaches the file.

Exit codes: 0 every reported probe PASS/DEGRADED, 1 any FAIL or ERROR, or nothing to report (a report
is a document, not a pipeline gate: ``synthmon once`` tells the monitor's ERROR apart with exit 3),
2 bad config, unknown probe, unusable store or unwritable output.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from monitor.cliutil import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    RunProgress,
    StatusLine,
    StoreSection,
    add_config_option,
    config_path,
    load_or_report,
    load_store_section,
    open_database,
)
from monitor.logs import LEVELS

if TYPE_CHECKING:  # annotations only: the handlers import what they run (fast --help)
    from monitor.results import ProbeResult
    from probes.base import Clock
    from probes.support.masking import SecretMasker

#: Every stored run is newer than this: "since the beginning" for :meth:`SqlHistoryStore.runs`.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def register(subparsers: Any) -> None:
    """Add ``report`` to the ``synthmon`` parser."""
    p = subparsers.add_parser(
        "report",
        help="Markdown report of the latest run of each probe, compared with the run before it",
        description="Write a Markdown run report: overall status, one section per probe with its "
        "steps and the failing step's diagnosis, a comparison with the previous run and the "
        "required actions. Reads the latest stored runs (no API key needed), or runs the probes "
        "now with --run. Exit 0 all passed, 1 any failed, 2 bad config, probe, store or output.",
    )
    add_config_option(p)
    p.add_argument("--probe", action="append", metavar="NAME", help="only this probe (repeat for several)")
    p.add_argument("--output", metavar="PATH", help="write the report here (default: stdout)")
    p.add_argument(
        "--run",
        action="store_true",
        help="run the probes now (like 'synthmon once') instead of reading the latest stored runs",
    )
    p.add_argument(
        "--log-level",
        choices=sorted(LEVELS),
        default="warning",
        help="log level of the probe run with --run (default: %(default)s)",
    )
    p.set_defaults(func=cmd_report)


def cmd_report(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Clock | None = None,
) -> int:
    """``synthmon report``: render, mask and write the report; the exit code as documented above."""
    from monitor.report import render_report
    from probes.base import SystemClock

    # Resolved per call, not at import: tests and wrappers may swap sys.stdout.
    out = out or sys.stdout
    err = err or sys.stderr
    clock = clock or SystemClock()
    gathered = _gather_run(args, err, clock) if args.run else _gather_stored(args, err)
    if gathered is None:
        return EXIT_CONFIG
    current, previous, environment, masker = gathered
    text = masker.mask(render_report(current, previous, environment=environment, generated_at=clock.now()))
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"synthmon: cannot write {args.output}: {exc.strerror}", file=err)
            return EXIT_CONFIG
        print(f"synthmon: report written to {args.output}", file=err)
    else:
        out.write(text)
    if not current:
        print(
            "synthmon: no runs to report (runs are stored by 'synthmon run', 'synthmon once --record' "
            "and 'synthmon demo', each in its config's store)",
            file=err,
        )
        return EXIT_FAILED
    return EXIT_OK if all(r.status.ok for r in current) else EXIT_FAILED


#: What a source hands the renderer: current, previous, environment name and the masker to apply.
Gathered: TypeAlias = "tuple[list[ProbeResult], list[ProbeResult], str, SecretMasker]"


def _gather_stored(args: argparse.Namespace, err: TextIO) -> Gathered | None:
    """The latest two stored runs of each selected probe (newest is current)."""
    from monitor.configfile import ConfigError
    from monitor.history.sqlstore import SqlHistoryStore
    from probes.support.masking import SecretMasker

    try:
        section = load_store_section(config_path(args))
    except ConfigError as exc:
        print(f"synthmon: invalid config: {exc}", file=err)
        return None
    names = _selected(args.probe, section.probes, err)
    if names is None:
        return None
    db = open_database(section, err)
    if db is None:
        return None
    store = SqlHistoryStore(db)
    current: list[ProbeResult] = []
    previous: list[ProbeResult] = []
    try:
        print(f"store: {section.label()}", file=err)
        for name in names:
            # Composed from runs(): the store has no "last two runs per probe" query of its own.
            recent = store.runs(probe=name, since=_EPOCH, limit=2)
            if not recent:
                print(f"synthmon: no stored run of {name}", file=err)
                continue
            current.append(recent[0])
            previous.extend(recent[1:])
    finally:
        db.close()
    # The store section carries no environment (it must load without the rest of the config); the
    # runs record the one they ran in.
    environment = next((r.environment for r in current if r.environment), "")
    return current, previous, environment, SecretMasker()


def _gather_run(args: argparse.Namespace, err: TextIO, clock: Clock) -> Gathered | None:
    """Run the selected probes now; the previous runs are the latest stored ones, if the store opens."""
    import asyncio
    import logging

    from prometheus_client import CollectorRegistry

    from monitor.daemon import Daemon  # only --run needs the probe machinery
    from monitor.history.sqlstore import SqlHistoryStore
    from monitor.logs import make_logger
    from monitor.runner import select_probes
    from monitor.stdlib_logs import route_stdlib_logging
    from probes.support.masking import SecretMasker

    config = load_or_report(args, err)
    if config is None:
        return None
    names = _selected(args.probe, tuple(p.name for p in config.probes), err)
    if names is None:
        return None
    masker = SecretMasker(config.secret_values())
    logger = make_logger(masker, stream=err, level=args.log_level)
    handler = route_stdlib_logging(logger, level="warning")
    progress = RunProgress("synthmon report --run", select_probes(config, list(args.probe or [])))
    try:
        daemon = Daemon(
            config, registry=CollectorRegistry(), clock=clock, logger=logger, masker=masker, sinks=[progress]
        )
        with StatusLine(err, progress.line) as line:
            progress.on_change = line.refresh
            current = asyncio.run(daemon.run_once(list(args.probe or [])))
    finally:
        logging.getLogger().removeHandler(handler)
    previous: list[ProbeResult] = []
    db = open_database(StoreSection(store=config.store, probes=tuple(names)), err)
    if db is None:
        print("synthmon: no previous runs (the store could not be opened)", file=err)
    else:
        try:
            latest = SqlHistoryStore(db).latest_runs()
        finally:
            db.close()
        previous = [latest[r.probe] for r in current if r.probe in latest]
    return current, previous, config.environment, masker


def _selected(requested: Sequence[str] | None, configured: Sequence[str], err: TextIO) -> list[str] | None:
    """The probes to report, in config order: ``requested`` (all configured when none), or None
    after naming the first unknown one (a typo must not yield an empty, "passing" report)."""
    wanted = list(dict.fromkeys(requested or []))
    unknown = [n for n in wanted if n not in configured]
    if unknown:
        known = ", ".join(configured) or "(none)"
        print(f"synthmon: unknown probe {unknown[0]!r}; configured: {known}", file=err)
        return None
    return [n for n in configured if not wanted or n in wanted]
