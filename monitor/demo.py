"""``synthmon demo``: the local platform and the monitor together, results and incidents printed as
they come.

Starts the sandbox (real MLflow, auth service, registry proxy) with the requested faults, points
the config (``config.yaml`` by default) at it through the same environment variables production
uses (``AUTH_URL``, ``REGISTRY_URL``, ``SYNTHMON_API_KEY``), runs the production daemon, prints a
banner (status page, metrics, the commands to break and heal the platform and to read the demo's
history, each runnable as printed), then one line per finished probe run and a few lines per
incident event. Ctrl-C stops the daemon, then the sandbox.

The demo profile (:mod:`monitor.demo_profile`) times the loaded config so that a fault switched on
while you watch opens an incident within a minute: probes every 15 s (registration every 60 s: a
whole MLflow workflow), timeouts no longer than the interval, jitter of at most 1 s, at most 2
failing runs to open and 2 good runs to resolve. A SIGHUP reload re-applies it.

A demo is often started from a shell that also holds production settings. It therefore always
uses its own store (``<workdir>/synthmon.db``) and environment name (``demo``), and it drops every
``SLACK_*`` variable and any Slack channel of the config, so a demo incident never pages the real
channel nor lands in the production history. ``--slack`` keeps Slack, for trying notifications.
The log channel is always on: it is what prints the incidents in the terminal.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from collections.abc import Mapping, MutableMapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from monitor.cliutil import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    StatusLine,
    add_config_option,
    config_path,
    load_store_section,
    terminal_width,
    wrap_cell,
    wrap_words,
)

if TYPE_CHECKING:  # annotations only: functions import what they run (a fast --help)
    from monitor.config import Config
    from monitor.results import ProbeResult
    from probes.support.masking import SecretMasker


DEFAULT_WORKDIR = "var/demo"
#: The environment name every demo run reports (results, logs, the store's rows).
DEMO_ENVIRONMENT = "demo"

#: Where a result's message starts, under the time column.
MESSAGE_INDENT = " " * 10
#: The fault the banner offers to switch on (the July 2025 incident), else the first other one.
SUGGESTED_FAULTS = ("artifacts-404", "registry-health-503", "mlflow-down")


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
    from monitor.alerting.config import SlackConfig

    changes: dict[str, Any] = {
        "environment": DEMO_ENVIRONMENT,
        "store": config.store.model_copy(update={"url": demo_store_url(workdir)}),
    }
    alerting = config.alerting
    if not keep_slack:
        alerting = alerting.model_copy(update={"slack": SlackConfig()})
    if alerting.links.status_page_url is None:
        # Notifications (with --slack) link to the demo's own status page.
        host, port = config.listen_address()
        base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '', '::') else host}:{port}/"
        alerting = alerting.model_copy(
            update={"links": alerting.links.model_copy(update={"status_page_url": base})}
        )
    changes["alerting"] = alerting
    return config.model_copy(update=changes)


def format_result(result: ProbeResult, width: int = 0) -> str:
    """A finished run: time, probe, status, duration and the failing (or slow) step with its cause on
    one line, the step's message on the next (at most two lines of ``width``, cut between words;
    whole when ``width`` is 0)."""
    from probes.base import Status

    when = result.started_at.astimezone().strftime("%H:%M:%S")
    line = f"{when}  {result.probe:<19} {result.status.value:<8} {result.duration_s:6.2f}s"
    step = result.failing_step
    if step is None and result.status is Status.DEGRADED:
        step = next((s for s in result.steps if s.status is Status.DEGRADED), None)
    if step is None:
        return line
    line += f"  {step.name}" + (f"  [{step.diagnosis.cause}]" if step.diagnosis is not None else "")
    if not step.message:
        return line
    if width <= 0:
        return f"{line}\n{MESSAGE_INDENT}{' '.join(step.message.split())}"
    message, _ = wrap_cell(step.message, max(width - len(MESSAGE_INDENT), 20), max_lines=2)
    return line + "".join(f"\n{MESSAGE_INDENT}{part}" for part in message)


class PrintSink:
    """A ResultSink that prints each finished probe run: one line, and a failing step's message under
    it (the demo's live view)."""

    def __init__(self, out: TextIO, lock: threading.Lock | None = None) -> None:
        self._out = out
        self._lock = lock or threading.Lock()

    async def handle(self, result: ProbeResult) -> None:
        """Print ``result``; a closed terminal is not the monitor's failure."""
        # On a terminal a message fits the window; in a file it is kept whole.
        width = terminal_width() if _isatty(self._out) else 0
        _write(self._out, self._lock, format_result(result, width) + "\n")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _write(out: TextIO, lock: threading.Lock, text: str) -> None:
    # One lock for result lines (event loop) and incident lines (the outbox's thread).
    with lock:
        try:
            out.write(text)
            out.flush()
        except (OSError, ValueError):
            return


def format_incident(event: str, fields: Mapping[str, Any], now: datetime, width: int = 0) -> str | None:
    """The lines the terminal shows for one incident event of the log channel, or None for any
    other log event.

    ``fields`` are what :class:`monitor.alerting.log.LogNotifier` logs: the event's probe, step,
    change and cause, and the incident's summary (root cause in words, where it shows, the
    affected and still failing probes, the first action). With a ``width`` the hint and action wrap
    between words to it.
    """
    from monitor.alerting.base import EventKind
    from monitor.alerting.slack_message import duration_words

    kind = event.removeprefix("incident_")
    if kind == event or kind not in {k.value for k in EventKind}:
        return None
    when = now.astimezone().strftime("%H:%M:%S")
    title = fields.get("root_cause") or fields.get("cause") or "failure"
    where = f"{fields.get('probe')}/{fields['step']}" if fields.get("step") else str(fields.get("probe"))
    affected = ", ".join(fields.get("affected") or []) or where
    lines: list[str] = []
    if kind == "opened":
        http = f" (HTTP {fields['http_status']})" if fields.get("http_status") is not None else ""
        lines.append(f"{when}  INCIDENT OPENED: {title}, at {where}{http}")
        for label, key in (("why:", "hint"), ("do: ", "action")):
            if fields.get(key):
                text = " ".join(str(fields[key]).split())
                parts = wrap_words(text, width - 15) if width > 0 else [text]
                lines.extend(
                    f"{MESSAGE_INDENT}{label if i == 0 else '    '} {part}" for i, part in enumerate(parts)
                )
    elif kind in ("joined", "updated"):
        verb = "joins" if kind == "joined" else "now fails at"
        lines.append(f"{when}  incident {title}: {where} {verb} it; affected: {affected}")
    elif kind == "reminder":
        lines.append(
            f"{when}  incident {title}: still failing ({fields.get('change')}); affected: {affected}"
        )
    elif kind == "recovered":
        still = ", ".join(fields.get("still_failing") or []) or "none"
        lines.append(f"{when}  incident {title}: {fields.get('probe')} recovered; still failing: {still}")
    elif kind == "resolved":
        # The incident's start when the log channel gives it, else the resolving member's.
        since = fields.get("incident_since") or fields.get("since")
        lasted = ""
        if isinstance(since, str):
            lasted = f" after {duration_words((now - datetime.fromisoformat(since)).total_seconds())}"
        lines.append(f"{when}  INCIDENT RESOLVED{lasted}: {title}; affected: {affected}")
    else:
        lines.append(f"{when}  incident {kind}: {title} at {where}")
    return "\n".join(lines) + "\n"


class IncidentPrinter:
    """The daemon's logger, also printing each incident event of the log channel on the terminal.

    The log notifier (:class:`monitor.alerting.log.LogNotifier`) already logs every incident event
    with its root cause and affected probes; in the demo those JSON lines go to a file, so this
    wrapper also renders them as a few readable lines (:func:`format_incident`). Everything else
    is passed to the wrapped logger untouched.
    """

    def __init__(
        self, logger: Any, out: TextIO, lock: threading.Lock, now: Any, masker: SecretMasker
    ) -> None:
        self._logger = logger
        self._out = out
        self._lock = lock
        self._now = now
        self._masker = masker

    def _tee(self, level: str) -> Any:
        method = getattr(self._logger, level)

        def log(event: str, *args: Any, **fields: Any) -> Any:
            width = terminal_width() if _isatty(self._out) else 0
            text = format_incident(event, fields, self._now(), width) if isinstance(event, str) else None
            if text is not None:
                _write(self._out, self._lock, self._masker.mask(text))
            return method(event, *args, **fields)

        return log

    def __getattr__(self, name: str) -> Any:
        if name in ("info", "warning", "error"):
            return self._tee(name)
        return getattr(self._logger, name)


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
    print(f"starting the sandbox in {shown_path(box.workdir)} ...", file=stream, flush=True)
    try:
        with StatusLine(
            sys.stderr,
            lambda t: (
                f"starting the sandbox: {t:.0f} s (a first start migrates MLflow's database: about a minute)"
            ),
        ):
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
        history = history_command(config_path(args), workdir)
        if history is not None:
            print(f"the demo's runs stay in its store; to read them:\n  {history}", file=stream, flush=True)


def shown_path(path: Path) -> str:
    """``path`` as the user should type it: relative to the current directory when inside it
    (``var/demo/sandbox``), else absolute."""
    # abspath, not resolve(): a venv's python is a symlink to the system's, and must stay the venv's.
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def synthmon_command() -> str:
    """This synthmon as a shell runs it from the current directory: ``.venv/bin/synthmon`` after
    ``make demo`` (``synthmon`` alone is not on PATH there), else ``python -m monitor``."""
    script = Path(sys.executable).with_name("synthmon")
    if script.is_file():
        shown = shown_path(script)
        # A bare name would be looked up on PATH; a relative path with a slash is not.
        return shlex.quote(shown if "/" in shown else f"./{shown}")
    return f"{shlex.quote(shown_path(Path(sys.executable)))} -m monitor"


def history_command(config_file: str, workdir: Path) -> str | None:
    """``synthmon report`` reading the demo's store, as a shell runs it from here, or None when the
    config file names its store literally (``SYNTHMON_STORE_URL`` would not reach it)."""
    from monitor.configfile import ConfigError

    url = f"sqlite:///{shown_path(workdir / 'synthmon.db')}"
    try:
        section = load_store_section(config_file, env={**os.environ, "SYNTHMON_STORE_URL": url})
    except ConfigError:
        return None
    if section.store.url != url:
        return None
    return (
        f"SYNTHMON_STORE_URL={shlex.quote(url)} {synthmon_command()} report "
        f"--config {shlex.quote(shown_path(Path(config_file)))}"
    )


def banner(
    config: Config, box: Any, workdir: Path, config_file: str, *, listen: tuple[str, int] | None = None
) -> str:
    """What the demo prints before the results: where to look, what to type, how fast faults show.

    Every command in it runs as printed from the current directory.
    """
    from monitor.demo_profile import SLOW_KINDS, open_within_s

    host, port = listen if listen is not None else config.listen_address()
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '', '::') else host}:{port}"
    active = list(box.active_faults())
    fault = next((f for f in SUGGESTED_FAULTS if f not in active), SUGGESTED_FAULTS[0])
    synthmon = synthmon_command()
    sandbox_dir = shlex.quote(shown_path(box.workdir))
    fast = [p.name for p in config.probes if p.enabled and p.kind not in SLOW_KINDS]
    by_interval: dict[float, list[str]] = {}
    for probe in config.probes:
        if probe.enabled:
            by_interval.setdefault(probe.interval, []).append(probe.name)
    every = ", ".join(f"{', '.join(names)} every {seconds:g} s" for seconds, names in by_interval.items())
    soonest = min((open_within_s(config, name) for name in fast), default=0.0)
    default = config.alerting.rules.failure_threshold
    exceptions = [
        f"{p.name}: {n}"
        for p in config.probes
        if p.enabled and (n := config.alerting.rule_for(p.name).failure_threshold) != default
    ]
    history = history_command(config_file, workdir)
    lines = [
        f"sandbox ready: auth {box.auth_url}, registry {box.registry_url} "
        f"(faults: {', '.join(active) or 'none'})",
        f"status page: {base}/   metrics: {base}/metrics",
        f"demo profile: {every}",
        f"incidents: {default} failing runs in a row open one"
        + (f" ({', '.join(exceptions)})" if exceptions else "")
        + f", within {soonest:.0f} s of a fault; they show here as INCIDENT lines",
        "from another shell in this directory:",
        f"  break it:  {synthmon} sandbox fault {fault} --workdir {sandbox_dir}",
        f"  heal it:   {synthmon} sandbox clear --workdir {sandbox_dir}",
        f"  history:   {history}"
        if history is not None
        else f"  history:   in sqlite:///{shown_path(workdir / 'synthmon.db')} "
        "(point a config's store.url at it)",
        f"daemon log: {shown_path(workdir / 'synthmon.log')}",
        "Ctrl-C stops everything. Results as they come:",
    ]
    return "\n".join(lines) + "\n"


def _load(args: argparse.Namespace, workdir: Path, *, keep_slack: bool) -> Config:
    """The config file, made the demo's (store, environment, Slack) with the demo profile."""
    from monitor.config import load_config
    from monitor.demo_profile import demo_profile

    config = demo_config(load_config(config_path(args), env=os.environ), workdir, keep_slack=keep_slack)
    return demo_profile(config)


def _run_daemon(args: argparse.Namespace, box: Any, workdir: Path, stream: TextIO) -> int:
    import asyncio
    import logging

    from prometheus_client import CollectorRegistry

    from monitor.app import build_monitor
    from monitor.configfile import ConfigError
    from monitor.logs import make_logger
    from monitor.server import ListenError
    from monitor.stdlib_logs import route_stdlib_logging
    from monitor.store.migrate import SchemaError
    from probes.base import SystemClock
    from probes.support.masking import SecretMasker

    keep_slack = bool(getattr(args, "slack", False))
    prepare_environment(os.environ, box.env(), workdir, keep_slack=keep_slack)
    try:
        config = _load(args, workdir, keep_slack=keep_slack)
    except ConfigError as exc:
        print(f"synthmon demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    masker = SecretMasker(config.secret_values())
    # Daemon logs go to a file: the terminal shows the one-line results and the incidents.
    log_file = (workdir / "synthmon.log").open("a", encoding="utf-8")
    lock = threading.Lock()
    clock = SystemClock()
    logger = IncidentPrinter(
        make_logger(masker, stream=log_file, json=True, level="info"), stream, lock, clock.now, masker
    )
    handler = route_stdlib_logging(logger, level="warning")
    try:
        # The production pipeline (history, incidents, log/Slack notifications, /api routes) as
        # `synthmon run` builds it, plus the line printer: the demo shows the real daemon.
        try:
            daemon = build_monitor(
                config,
                registry=CollectorRegistry(),
                clock=clock,
                logger=logger,
                masker=masker,
                config_path=config_path(args),
                extra_sinks=[PrintSink(stream, lock)],
            )
        except SchemaError as exc:
            print(f"synthmon demo: store: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        _write(stream, lock, banner(config, box, workdir, config_path(args)))
        try:
            return asyncio.run(_serve(daemon, lambda: _load(args, workdir, keep_slack=keep_slack), logger))
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


async def _serve(daemon: Any, reload: Any, logger: Any) -> int:
    """``daemon.serve()`` with the daemon's signals, except that SIGHUP reloads through ``reload``
    (the config file with the demo's store, Slack and profile), not the bare file."""
    import asyncio

    from monitor.configfile import ConfigError

    loop = asyncio.get_running_loop()

    async def reloaded() -> None:
        try:
            new = await asyncio.to_thread(reload)
        except ConfigError as exc:
            logger.error("config.reload_failed", error=str(exc), keeping="previous config")
            return
        await daemon.reload(new)

    tasks: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = loop.create_task(reloaded())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        code: int = await daemon.serve(install_signals=False)
        return code
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
