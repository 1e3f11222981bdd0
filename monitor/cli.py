"""The ``synthmon`` command line.

Built-in commands: ``run`` (the daemon), ``once`` (a post-deployment check with exit codes) and
``check-config``. More commands plug in through :data:`COMMAND_MODULES`: each module exposes
``register(subparsers) -> None`` adding its parser(s) with ``set_defaults(func=handler)``, where
``handler(args) -> int`` returns the exit code. Command modules take what they share
(``--config``, loading the config or the store section, tables) from :mod:`monitor.cliutil`, never
from this module, which imports them.

Exit codes: 0 success, 1 the platform failed a check (``once``: any FAIL) or the listen address is
taken (``run``), 2 the config (or a command line) is invalid, or the store was written by a newer
synthmon (``run``), 3 only the monitor failed (``once``: ERROR and no FAIL).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    open_database,
)
from monitor.logs import LEVELS
from monitor.version import synthmon_version

if TYPE_CHECKING:  # annotations only: functions import what they run (a fast --help)
    from monitor.results import ProbeResult
    from monitor.store.config import StoreConfig
    from monitor.store.database import Database


#: Modules adding subcommands (``register(subparsers)``), loaded in this order.
COMMAND_MODULES: list[str] = [
    "monitor.history.commands",
    "monitor.slo.commands",
    "monitor.alerting.commands",
    "monitor.report_cli",
    "monitor.locations_cli",
    "sandbox.cli",
    "monitor.demo",
]


# --- run ---------------------------------------------------------------------------------------

#: Modules a library imports with itself that the daemon never runs, kept out of its memory for
#: good: ``httpx`` imports its command-line client (``httpx._main``: click, pygments, and rich when
#: installed; pygments alone is about 1 MB) along with the package.
DAEMON_SKIPS: tuple[str, ...] = ("httpx._main",)


def skip_unused_modules(names: Sequence[str] = DAEMON_SKIPS) -> None:
    """Make importing each of ``names`` raise ``ImportError``, as if it were not installed.

    A ``None`` entry in ``sys.modules`` is how Python blocks an import. ``httpx`` expects that
    failure (its optional dependencies may be missing): ``httpx.main`` then says what to install.
    A module already imported stays as it is. Call it before the first import of the library.
    """
    for name in names:
        # The one place sys.modules holds None on purpose (typeshed allows modules only).
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


#: How many glibc malloc arenas the daemon's threads share (glibc's ``M_ARENA_MAX``).
MALLOC_ARENAS = 2

_M_ARENA_MAX = -8  # glibc malloc.h


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas, as ``MALLOC_ARENA_MAX`` does; call it before threads start.

    glibc gives each thread that allocates an arena of its own (up to eight per core), and each
    arena keeps what it freed for its thread: the daemon's seven threads (store workers, the
    loop's executor, the watchdog, the child watcher) held about 4 MB in them at idle, and the
    daemon about 1 MB more than with two arenas. Its threads allocate little through malloc (Python
    objects come from Python's own allocator), so they seldom wait on a shared arena. Nothing is
    changed where ``MALLOC_ARENA_MAX`` is set (the operator's choice) or the C library is not glibc.
    """
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        glibc = None
    if not glibc or "MALLOC_ARENA_MAX" in os.environ:
        return
    import ctypes

    ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas)


def _cmd_run(args: argparse.Namespace) -> int:
    skip_unused_modules()
    limit_malloc_arenas()

    import asyncio
    import gc
    import logging

    from prometheus_client import CollectorRegistry
    from sqlalchemy.exc import ArgumentError

    from monitor.app import build_monitor
    from monitor.logs import make_logger
    from monitor.server import ListenError
    from monitor.stdlib_logs import route_stdlib_logging
    from monitor.store.migrate import SchemaError
    from probes.base import SystemClock
    from probes.support.masking import SecretMasker

    config = load_or_report(args)
    if config is None:
        return EXIT_CONFIG
    masker = SecretMasker(config.secret_values())
    logger = make_logger(masker, json=_json_logs(args), level=args.log_level)
    handler = route_stdlib_logging(logger, level="warning")
    try:
        try:
            daemon = build_monitor(
                config,
                registry=CollectorRegistry(),
                clock=SystemClock(),
                logger=logger,
                masker=masker,
                config_path=config_path(args),
                grace_s=args.grace,
                watchdog_s=args.watchdog,
            )
        except SchemaError as exc:
            # A database written by a newer synthmon: refuse rather than corrupt it. (A database
            # that is merely unreachable does not get here: it is opened in the background.)
            print(f"synthmon: store: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        except ArgumentError:
            # An unparseable store URL is a config error. The message may hold the URL (password).
            print("synthmon: invalid config: store.url: not a valid database URL", file=sys.stderr)
            return EXIT_CONFIG
        # What is built by now lives as long as the process. Out of the collector's sight, a full
        # collection scans what runs allocate instead of ~80k start-up objects as well: a 40 ms
        # stop of the event loop that made runs start late and billed its time to the platform.
        gc.collect()
        gc.freeze()
        return asyncio.run(daemon.serve())
    except ListenError as exc:
        # The one start-up failure that comes from the host, not the config: exit 1, not 2.
        logger.error("daemon.listen_failed", listen=config.listen, error=str(exc))
        print(f"synthmon: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        logging.getLogger().removeHandler(handler)


def _json_logs(args: argparse.Namespace) -> bool | None:
    return {"json": True, "console": False}.get(args.log_format)


# --- once --------------------------------------------------------------------------------------

#: ``synthmon once --help``: the exit codes a pipeline branches on (docs/pipelines.md).
ONCE_EPILOG = """\
exit codes:
  0  every probe PASS or DEGRADED
  1  the platform failed: at least one FAIL (whatever else happened)
  2  invalid config, unknown probe, no probe selected, an unwritable --output, or a
     history store that --record cannot open or write
  3  only the monitor failed: an ERROR (a check could not run) and no FAIL
"""


def _cmd_once(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import os

    from prometheus_client import CollectorRegistry

    from monitor.app import build_daemon
    from monitor.location import resolve_location
    from monitor.logs import make_logger
    from monitor.once_output import once_exit_code, once_table
    from monitor.runner import select_probes
    from monitor.stdlib_logs import route_stdlib_logging
    from probes.base import SystemClock
    from probes.support.masking import SecretMasker

    config = load_or_report(args)
    if config is None:
        return EXIT_CONFIG
    names = list(dict.fromkeys(args.probe or []))
    unknown = [n for n in names if n not in {p.name for p in config.probes}]
    if unknown:
        known = ", ".join(p.name for p in config.probes) or "(none)"
        print(f"synthmon: unknown probe {unknown[0]!r}; configured: {known}", file=sys.stderr)
        return EXIT_CONFIG
    output = Path(args.output) if args.output else None
    # Checked before the run, so a typo in a pipeline does not cost a whole run first.
    if output is not None and (output.is_dir() or not output.parent.is_dir()):
        print(f"synthmon: cannot write {output}: no such directory, or a directory", file=sys.stderr)
        return EXIT_CONFIG
    # Opened (and migrated, as the daemon would) before the run: a store that cannot be written
    # must not cost a whole run first.
    db = (
        open_database(StoreSection(config.store, tuple(names)), sys.stderr, migrate=True)
        if args.record
        else None
    )
    if args.record and db is None:
        return EXIT_CONFIG
    masker = SecretMasker(config.secret_values())
    logger = make_logger(masker, json=_json_logs(args), level=args.log_level)
    # Library warnings (httpx, mlflow in a child's stderr tail, ...) go through the masker here too.
    handler = route_stdlib_logging(logger, level="warning")
    progress = RunProgress("synthmon once", select_probes(config, names))
    try:
        daemon = build_daemon(
            config,
            registry=CollectorRegistry(),
            clock=SystemClock(),
            logger=logger,
            masker=masker,
            sinks=[progress],
            # Recorded runs say where they were made from, as the daemon's do.
            location=resolve_location(config.location, os.environ, logger=logger),
        )
        with StatusLine(sys.stderr, progress.line) as line:
            progress.on_change = line.refresh
            results = asyncio.run(daemon.run_once(names))
        if db is not None and results:
            recorded = _record(db, config.store, results)
            if recorded is None:
                return EXIT_CONFIG
            print(f"synthmon: {recorded} runs recorded in {config.store.safe_url()}", file=sys.stderr)
    finally:
        logging.getLogger().removeHandler(handler)
        if db is not None:
            db.close()
    if not results:
        print("synthmon: no probes selected (all disabled?)", file=sys.stderr)
        return EXIT_CONFIG
    report = _once_report(args.format, config.environment, results, full=args.full)
    if output is None:
        sys.stdout.write(report)
    else:
        try:
            output.write_text(report, encoding="utf-8")
        except OSError as exc:
            print(f"synthmon: cannot write {output}: {exc.strerror}", file=sys.stderr)
            return EXIT_CONFIG
        # The job log still shows what happened; the file is for the CI system to parse.
        sys.stdout.write(once_table(results, full=args.full))
        print(f"synthmon: {args.format} report written to {output}", file=sys.stderr)
    return once_exit_code(results)


def _once_report(fmt: str, environment: str, results: Sequence[ProbeResult], *, full: bool = False) -> str:
    """The text of ``once``'s output in format ``fmt`` (table, json or junit)."""
    from monitor.junit import render_junit
    from monitor.once_output import once_json, once_table

    if fmt == "json":
        return json.dumps(once_json(environment, results), indent=2) + "\n"
    if fmt == "junit":
        return render_junit(environment, results)
    return once_table(results, full=full)


def _record(db: Database, store: StoreConfig, results: Sequence[ProbeResult]) -> int | None:
    """Append ``results`` to the history store (as the daemon's history does); None after one line
    on stderr when the write fails."""
    from monitor.history.sqlstore import SqlHistoryStore

    try:
        return SqlHistoryStore(
            db, retention_days=store.retention_days, rollup_retention_days=store.rollup_retention_days
        ).append_runs(results)
    except Exception as exc:  # a database gone since it was opened: one line naming the store, no traceback
        print(
            f"synthmon: cannot record the runs in {store.safe_url()}: {type(exc).__name__}", file=sys.stderr
        )
        return None


def _cmd_check_config(args: argparse.Namespace) -> int:
    import yaml

    config = load_or_report(args)
    if config is None:
        return EXIT_CONFIG
    if not args.quiet:
        sys.stdout.write(yaml.safe_dump(config.effective(), sort_keys=False))
    enabled = [p.name for p in config.probes if p.enabled]
    print(f"synthmon: config OK ({config_path(args)}: {len(enabled)} enabled probes)", file=sys.stderr)
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------------


def _add_log_options(parser: argparse.ArgumentParser, default_level: str) -> None:
    parser.add_argument(
        "--log-level", choices=sorted(LEVELS), default=default_level, help="default: %(default)s"
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default="auto",
        help="auto: console on a terminal, JSON otherwise (default)",
    )


#: ``synthmon run --help``: what the shipped config.yaml reads from the environment, the HTTP
#: routes and the exit codes. A test checks every ${VAR} of config.yaml is named here.
RUN_EPILOG = """\
environment variables read by the shipped config.yaml:
  SYNTHMON_ENV          environment name (default: sandbox)
  SYNTHMON_LISTEN       HTTP listen address (default: 0.0.0.0:9710)
  SYNTHMON_API_KEY      the monitoring API key (required; never logged)
  AUTH_URL              auth service base URL (default: the sandbox's)
  REGISTRY_URL          registry proxy base URL (default: the sandbox's)
  SYNTHMON_SERVICE_ID   service id the key must validate for (default: platform)
  SYNTHMON_EXPERIMENT   MLflow experiment of the synthetic runs
  SYNTHMON_MODEL        registered model name of the registration probe
  SYNTHMON_STORE_URL    history store (default: sqlite:///var/synthmon.db)
  SLACK_WEBHOOK_URL     Slack incoming webhook, or:
  SLACK_BOT_TOKEN, SLACK_CHANNEL, SLACK_API_URL   Slack bot (threads and edits)
  SYNTHMON_CONFIG       the config file when --config is not given
  SYNTHMON_LOCATION     where this daemon probes from, when the config has no location:
                        (else the ECS task's availability zone or region, else "default")

HTTP routes on the listen address:
  /metrics              Prometheus metrics
  /healthz              200 while the process is alive
  /readyz               200 when started and not draining, else 503
  /                     status page
  /api/v1/status, /api/v1/runs, /api/v1/incidents, /api/v1/store   history API (JSON)

exit codes:
  0  stopped by SIGTERM/SIGINT after draining
  1  the listen address cannot be bound (e.g. already in use)
  2  invalid config, or a store written by a newer synthmon (schema too new)
  70 the scheduler stopped firing for --watchdog seconds (a stuck event loop): restart it
"""


class _VersionAction(argparse.Action):
    """``--version``: looks the installed version up only when asked.

    argparse's own ``version`` action takes the string when the parser is built, so every command
    (``--help`` included) would pay for reading the distribution's metadata.
    """

    def __init__(self, option_strings: Sequence[str], dest: str) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show program's version number and exit",  # argparse's own wording
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        sys.stdout.write(f"synthmon {synthmon_version()}\n")
        parser.exit()


class _DescribedSubparsers:
    """Wraps ``add_subparsers()`` so a command registered with only ``help=`` gets it as description.

    Without a description, ``synthmon history --help`` would show nothing but the options. Command
    modules keep registering as before; anything else is passed through to argparse.
    """

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """``add_parser`` with ``description`` defaulting to the help text as a sentence."""
        text = kwargs.get("help")
        if kwargs.get("description") is None and isinstance(text, str) and text:
            kwargs["description"] = text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
        parser: argparse.ArgumentParser = self._subparsers.add_parser(name, **kwargs)
        return parser

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._subparsers, attr)


def register(subparsers: Any) -> None:
    """Add the built-in commands (run, once, check-config)."""
    run = subparsers.add_parser(
        "run",
        help="run the monitor daemon (probes on schedule, /metrics, /healthz, /readyz)",
        description="Run every enabled probe on its interval, forever. SIGTERM/SIGINT drain in-flight "
        "runs (up to --grace seconds) and exit 0; SIGHUP reloads the config (an invalid one is "
        "rejected and the running one kept).",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(run)
    run.add_argument(
        "--grace",
        type=float,
        default=25.0,
        metavar="SECONDS",
        help="drain time on SIGTERM (default: %(default)s)",
    )
    run.add_argument(
        "--watchdog",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="exit with status 70 when the scheduler has not fired for this long (a stuck event loop), "
        "so a supervisor or ECS restart policy restarts the daemon; 0 turns it off (default: %(default)s)",
    )
    _add_log_options(run, "info")
    run.set_defaults(func=_cmd_run)

    once = subparsers.add_parser(
        "once",
        help="run probes once; exit 0 all passed, 1 platform failed, 3 monitor failed, 2 bad config",
        # Lines broken by hand: the raw formatter keeps the epilog's table, and the description as is.
        description="Run the enabled probes (or those named with --probe, even if disabled) once,\n"
        "concurrently, and print a table, JSON or JUnit XML. Made for post-deployment checks in\n"
        "pipelines: the exit code tells a broken platform (1) from a broken monitor (3).",
        epilog=ONCE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(once)
    once.add_argument(
        "--probe", action="append", metavar="NAME", help="run only this probe (repeat for several)"
    )
    once.add_argument(
        "--format",
        choices=["table", "json", "junit"],
        default="table",
        help="output (default: %(default)s); junit: one testsuite per probe, one testcase per step",
    )
    once.add_argument(
        "--output",
        metavar="PATH",
        help="write the output here instead of stdout (stdout then shows the table, for the job log)",
    )
    once.add_argument(
        "--full",
        action="store_true",
        help="table: show every step's message whole (by default long ones are shortened at a word)",
    )
    once.add_argument(
        "--record",
        action="store_true",
        help="also store the runs in the config's history store, as the daemon does "
        "('synthmon report' then compares with them)",
    )
    _add_log_options(once, "warning")
    once.set_defaults(func=_cmd_once)

    check = subparsers.add_parser(
        "check-config",
        help="validate the config and print it as the daemon sees it (secrets masked)",
        description="Validate the config file: print the effective config (environment variables "
        "interpolated, defaults filled, secrets shown as **********) and exit 0, or print the one "
        "error with its field path and file line and exit 2.",
    )
    add_config_option(check)
    check.add_argument("-q", "--quiet", action="store_true", help="only validate; print nothing on success")
    check.set_defaults(func=_cmd_check_config)


def build_parser(modules: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser: built-in commands, then each module in ``modules`` (default COMMAND_MODULES)."""
    parser = argparse.ArgumentParser(
        prog="synthmon",
        description="Synthetic monitoring for an ML model registry platform "
        "(auth service -> registry proxy -> MLflow -> artifacts).",
        epilog="Every command takes --config PATH (default: $SYNTHMON_CONFIG or ./config.yaml). "
        "Run 'synthmon COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action=_VersionAction)
    add_config_option(parser)
    subparsers = _DescribedSubparsers(parser.add_subparsers(dest="command", metavar="COMMAND"))
    register(subparsers)
    for name in COMMAND_MODULES if modules is None else modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``synthmon`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The daemon lives for months: the other commands' modules and parsers (about 1 MB) would
    # stay in its memory for nothing. ``run`` given first is all the daemon's command lines
    # (the image's CMD); ``synthmon --config PATH run`` still works, with the full parser.
    parser = build_parser([] if argv[:1] == ["run"] else None)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_CONFIG
    return int(func(args))
