"""``synthmon demo``: the local platform and the monitor together, results printed as they come.

Starts the sandbox (real MLflow, auth service, registry proxy) with the requested faults, points
the default ``config.yaml`` at it through the same environment variables production uses
(``AUTH_URL``, ``REGISTRY_URL``, ``SYNTHMON_API_KEY``), runs the daemon, prints where the metrics
are, then one line per finished probe run. Ctrl-C stops the daemon, then the sandbox.

``make demo FAULT=artifacts-404`` replays the July 2025 incident. While it runs, faults can be
switched from another shell with ``synthmon sandbox fault NAME --workdir <workdir>``.

A demo is often started from a shell that also holds production settings. It therefore always
uses its own store (``<workdir>/synthmon.db``) and environment name (``demo``), and it drops every
``SLACK_*`` variable and any Slack channel of the config, so a demo incident never pages the real
channel nor lands in the production history. ``--slack`` keeps Slack, for trying notifications.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any, TextIO

from prometheus_client import CollectorRegistry

from monitor.alerting.config import SlackConfig
from monitor.app import build_monitor
from monitor.cliutil import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, add_config_option, config_path
from monitor.config import Config, load_config
from monitor.configfile import ConfigError
from monitor.logs import make_logger, route_stdlib_logging
from monitor.results import ProbeResult
from monitor.server import ListenError
from monitor.store.migrate import SchemaError
from probes.base import Status, SystemClock
from probes.support.masking import SecretMasker

DEFAULT_WORKDIR = "var/demo"
#: The environment name every demo run reports (results, logs, the store's rows).
DEMO_ENVIRONMENT = "demo"


def demo_store_url(workdir: Path) -> str:
    """The demo's own SQLite store, inside its workdir."""
    return f"sqlite:///{workdir / 'synthmon.db'}"


def prepare_environment(
    environ: MutableMapping[str, str], sandbox_env: Mapping[str, str], workdir: Path, *, keep_slack: bool
) -> None:
    """Point ``environ`` at the sandbox and away from anything real.

    The sandbox's URLs and key are exported (config.yaml reads what a deployment would set, and a
    SIGHUP reload re-reads the environment); the store and environment name are forced, not
    defaulted; ``SLACK_*`` is removed unless ``keep_slack``.
    """
    if not keep_slack:
        for name in [n for n in environ if n.startswith("SLACK_")]:
            del environ[name]
    environ.update(sandbox_env)
    environ["SYNTHMON_STORE_URL"] = demo_store_url(workdir)
    environ["SYNTHMON_ENV"] = DEMO_ENVIRONMENT


def demo_config(config: Config, workdir: Path, *, keep_slack: bool) -> Config:
    """``config`` with the demo's store and environment, and no Slack unless ``keep_slack``.

    The environment variables alone are not enough: a config file (``--config``,
    ``$SYNTHMON_CONFIG``) may name a production store or Slack channel literally.
    """
    changes: dict[str, Any] = {
        "environment": DEMO_ENVIRONMENT,
        "store": config.store.model_copy(update={"url": demo_store_url(workdir)}),
    }
    if not keep_slack:
        changes["alerting"] = config.alerting.model_copy(update={"slack": SlackConfig()})
    return config.model_copy(update=changes)


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
    parser.add_argument(
        "--slack",
        action="store_true",
        help="keep SLACK_* and the config's Slack channel: demo incidents are posted there (off by default)",
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
    keep_slack = bool(getattr(args, "slack", False))
    prepare_environment(os.environ, box.env(), workdir, keep_slack=keep_slack)
    try:
        config = demo_config(load_config(config_path(args), env=os.environ), workdir, keep_slack=keep_slack)
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
        try:
            return asyncio.run(daemon.serve())
        except ListenError as exc:
            # Usually another demo or a daemon on the port: one line, not a traceback.
            print(
                f"synthmon demo: {exc.strerror} "
                "(another synthmon running? set SYNTHMON_LISTEN=127.0.0.1:PORT)",
                file=sys.stderr,
            )
            return EXIT_FAILED
    finally:
        logging.getLogger().removeHandler(handler)
        log_file.close()
