"""``synthmon demo``: the local platform and the monitor together, results printed as they come.

Starts the sandbox (real MLflow, auth service, registry proxy) with the requested faults, points
the default ``config.yaml`` at it through the same environment variables production uses
(``AUTH_URL``, ``REGISTRY_URL``, ``SYNTHMON_API_KEY``), runs the daemon, prints where the metrics
are, then one line per finished probe run. Ctrl-C stops the daemon, then the sandbox.

``make demo FAULT=artifacts-404`` replays the July 2025 incident. While it runs, faults can be
switched from another shell with ``synthmon sandbox fault NAME --workdir <workdir>``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from prometheus_client import CollectorRegistry

from monitor.app import build_monitor
from monitor.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, add_config_option, config_path
from monitor.config import ConfigError, load_config
from monitor.history.migrate import SchemaError
from monitor.logs import SecretMasker, make_logger, route_stdlib_logging
from monitor.results import ProbeResult
from probes.base import Status, SystemClock

DEFAULT_WORKDIR = "var/demo"


def format_result(result: ProbeResult) -> str:
    """One line for a finished run: time, probe, status, duration, and the failing step with its cause."""
    when = result.started_at.astimezone().strftime("%H:%M:%S")
    line = f"{when}  {result.probe:<19} {result.status.value:<8} {result.duration_s:6.2f}s"
    failing = result.failing_step
    if failing is not None:
        line += f"  {failing.name}: {failing.message[:100]}"
        if failing.diagnosis is not None:
            line += f"  [{failing.diagnosis.cause}]"
    elif result.status is Status.DEGRADED:
        slow = next((s for s in result.steps if s.status is Status.DEGRADED), None)
        if slow is not None:
            line += f"  {slow.name}: {slow.message[:100]}"
    return line


class PrintSink:
    """A ResultSink that prints one line per finished probe run (the demo's live view)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    async def handle(self, result: ProbeResult) -> None:
        """Print ``result`` as one line; a closed terminal is not the monitor's failure."""
        try:
            self._out.write(format_result(result) + "\n")
            self._out.flush()
        except OSError:
            return


def register(subparsers: Any) -> None:
    """Add ``synthmon demo`` to the CLI (``set_defaults(func=...)``)."""
    parser = subparsers.add_parser(
        "demo", help="start the sandbox platform and run the monitor against it, printing results"
    )
    add_config_option(parser)
    parser.add_argument(
        "--fault", action="append", default=[], metavar="NAME", help="start the sandbox with this fault"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(DEFAULT_WORKDIR),
        help=f"sandbox and demo state directory (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument("--auth-port", type=int, default=8101, help="sandbox auth port (default 8101)")
    parser.add_argument(
        "--registry-port", type=int, default=8102, help="sandbox registry port (default 8102)"
    )
    parser.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the demo until Ctrl-C. Exit codes: 0 stopped, 1 the sandbox failed, 2 a bad fault/config."""
    # The sandbox is imported here: only this command needs it, and the daemon image may lack it.
    from sandbox import Sandbox, SandboxStartError, UnknownFaultError

    stream = out if out is not None else sys.stdout
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        box = Sandbox(
            workdir / "sandbox", auth_port=args.auth_port, registry_port=args.registry_port, faults=args.fault
        )
    except UnknownFaultError as exc:
        print(f"synthmon demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"starting the sandbox in {box.workdir} (first start migrates MLflow's database) ...",
        file=stream,
        flush=True,
    )
    try:
        box.start(timeout_s=180)
    except SandboxStartError as exc:
        print(f"synthmon demo: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return _run_daemon(args, box, workdir, stream)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        print("stopping the sandbox ...", file=stream, flush=True)
        box.stop()


def _run_daemon(args: argparse.Namespace, box: Any, workdir: Path, stream: TextIO) -> int:
    # Exported, not passed: config.yaml reads exactly what a deployment would set.
    os.environ.update(box.env())
    os.environ.setdefault("SYNTHMON_STORE_URL", f"sqlite:///{workdir / 'synthmon.db'}")
    os.environ.setdefault("SYNTHMON_ENV", "demo")
    try:
        config = load_config(config_path(args), env=os.environ)
    except ConfigError as exc:
        print(f"synthmon demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    masker = SecretMasker(config.secret_values())
    # Daemon logs go to a file: the terminal shows the one-line results.
    log_file = (workdir / "synthmon.log").open("a", encoding="utf-8")
    logger = make_logger(masker, stream=log_file, json=True, level="info")
    handler = route_stdlib_logging(logger, level="warning")
    try:
        registry, clock = CollectorRegistry(), SystemClock()
        # The production pipeline (history, incidents, log/Slack notifications, /api routes) as
        # `synthmon run` builds it, plus the line printer: the demo shows the real daemon.
        try:
            daemon = build_monitor(
                config,
                registry=registry,
                clock=clock,
                logger=logger,
                masker=masker,
                config_path=config_path(args),
                extra_sinks=[PrintSink(stream)],
            )
        except SchemaError as exc:
            print(f"synthmon demo: store: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        host, port = config.listen_address()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        faults = ", ".join(box.active_faults()) or "none"
        print(
            f"sandbox ready: auth {box.auth_url}, registry {box.registry_url} (faults: {faults})\n"
            f"metrics: http://{shown}:{port}/metrics   health: http://{shown}:{port}/healthz\n"
            f"daemon log: {workdir / 'synthmon.log'}\n"
            f"switch faults: synthmon sandbox fault NAME --workdir {box.workdir}   (clear: sandbox clear)\n"
            f"Ctrl-C stops everything. Results as they come:",
            file=stream,
            flush=True,
        )
        return asyncio.run(daemon.serve())
    finally:
        logging.getLogger().removeHandler(handler)
        log_file.close()
