"""Wiring: the only module that names concrete classes.

config -> scheduler -> runner -> result -> ``metrics.record`` -> every :class:`ResultSink`.

:func:`build_daemon` is the extension point: callers (the CLI, issue #5's store and alerting) pass
extra sinks, HTTP routes and periodic jobs without touching the internals here. A sink that raises
is logged and counted (``synthmon_sink_errors_total``) and never stops probing.

Signals (installed by :meth:`Daemon.serve`): SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the
config file: a valid new config replaces the old one (probes added, removed or rescheduled), an
invalid one is logged with its reason and counted, and the old one keeps running.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NamedTuple

import structlog
from prometheus_client import CollectorRegistry
from starlette.routing import BaseRoute

from monitor.alerting.base import Notifier
from monitor.alerting.config import AlertingConfig
from monitor.alerting.log import LogNotifier
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.outbox import Dispatcher
from monitor.alerting.sink import IncidentSink
from monitor.alerting.slack import SlackNotifier
from monitor.config import Config, ConfigError, load_config
from monitor.history.api import routes as api_routes
from monitor.history.config import StoreConfig
from monitor.history.metrics import StoreMetrics
from monitor.history.migrate import StoreGate
from monitor.history.retention import RetentionJob
from monitor.history.sink import HistorySink, ResilienceMetrics
from monitor.history.sqlstore import SqlStore, StoreExecutor, create_store_engine
from monitor.logs import SecretMasker
from monitor.metrics import Metrics
from monitor.results import ProbeResult, ResultSink
from monitor.runner import ClientFactory, Runner, default_client_factory, select_probes
from monitor.scheduler import ProbeScheduler
from monitor.server import HttpServer, build_app
from probes.base import Clock

#: ECS stops a task with SIGTERM and SIGKILLs it 30 s later; finish before that.
DEFAULT_GRACE_S = 25.0


def synthmon_version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare checkout)."""
    try:
        return version("synthmon")
    except PackageNotFoundError:
        return "unknown"


class PeriodicJob(NamedTuple):
    """Housekeeping run every ``interval_s`` on the daemon's scheduler (pruning, outbox, ...).

    A NamedTuple so that plain ``(name, interval_s, async_func)`` tuples are accepted as well.
    """

    name: str
    interval_s: float
    func: Callable[[], Awaitable[Any]]


JobLike = PeriodicJob | tuple[str, float, Callable[[], Awaitable[Any]]]
#: Called once after the drain on shutdown (flush buffers, close stores); sync or async.
ShutdownHook = Callable[[], Awaitable[Any] | Any]
#: Called with the new config after a successful reload (e.g. to refresh depends_on in incidents).
ReloadHook = Callable[[Config], Awaitable[Any] | Any]


class Daemon:
    """The running monitor: scheduler, runner, metrics, sinks and HTTP server on one event loop."""

    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry,
        clock: Clock,
        logger: Any,
        masker: SecretMasker | None = None,
        sinks: Sequence[ResultSink] = (),
        extra_routes: Sequence[BaseRoute] = (),
        jobs: Sequence[JobLike] = (),
        shutdown_hooks: Sequence[ShutdownHook] = (),
        reload_hooks: Sequence[ReloadHook] = (),
        config_path: str | Path | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        stagger_s: float = 5.0,
        heartbeat_s: float = 5.0,
        client_factory: ClientFactory | None = None,
        ready_details: Sequence[Callable[[], dict[str, Any]]] = (),
    ) -> None:
        self._config = config
        self._clock = clock
        self._log = logger
        # Without a masker of the caller's, mask this config's secrets.
        self._masker = masker if masker is not None else SecretMasker(config.secret_values())
        # One factory for the daemon's life: it holds the shared TLS context.
        self._client_factory = client_factory or default_client_factory()
        self.registry = registry
        self.metrics = Metrics(registry, version=synthmon_version())
        self.sinks: list[ResultSink] = list(sinks)
        self.metrics.declare(
            (p.name for p in config.probes),
            intervals={p.name: p.interval for p in config.probes},
            sinks=[type(s).__name__ for s in self.sinks],
        )
        self._ready_details = list(ready_details)
        self._jobs = [PeriodicJob(*job) for job in jobs]
        self._shutdown_hooks = list(shutdown_hooks)
        self._reload_hooks = list(reload_hooks)
        self._extra_routes = list(extra_routes)
        self.config_path = Path(config_path) if config_path is not None else None
        self.grace_s = grace_s
        self._masker.update(config.secret_values())
        self.runner = self._make_runner(config)
        self.scheduler = ProbeScheduler(
            run_probe=self.run_and_publish,
            clock=clock,
            logger=logger,
            on_missed=self.metrics.missed_run,
            on_job_error=self.metrics.job_error,
            stagger_s=stagger_s,
            heartbeat_s=heartbeat_s,
        )
        self.server: HttpServer | None = None
        self.last_results: dict[str, ProbeResult] = {}
        self._stop = asyncio.Event()
        self._reloading: asyncio.Task[bool] | None = None

    @property
    def config(self) -> Config:
        """The config in force (replaced on a successful reload)."""
        return self._config

    def _make_runner(self, config: Config) -> Runner:
        return Runner(
            config,
            clock=self._clock,
            logger=self._log,
            masker=self._masker,
            client_factory=self._client_factory,
        )

    # --- the pipeline ------------------------------------------------------------------------

    async def run_and_publish(self, name: str) -> ProbeResult:
        """Run one probe and hand the result to metrics and every sink."""
        result = await self.runner.run(name)
        await self.publish(result)
        return result

    async def publish(self, result: ProbeResult) -> None:
        """Metrics first, then each sink in order; a failing sink is logged and counted."""
        self.last_results[result.probe] = result
        self.metrics.record(result)
        for sink in self.sinks:
            sink_name = type(sink).__name__
            try:
                await sink.handle(result)
            except Exception:
                self.metrics.sink_error(sink_name)
                self._log.exception("sink.failed", sink=sink_name, probe=result.probe, run_id=result.run_id)

    async def run_once(self, names: Sequence[str] = ()) -> list[ProbeResult]:
        """Run the selected probes (every enabled one when empty) concurrently, in config order."""
        probes = select_probes(self._config, names)
        results = await asyncio.gather(*(self.run_and_publish(p.name) for p in probes))
        return list(results)

    # --- health ------------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Liveness: the scheduler's heartbeat is recent."""
        last = self.scheduler.last_tick
        age = None if last is None else round(self._clock.monotonic() - last, 3)
        return self.scheduler.alive(), {"scheduler_tick_age_s": age}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Readiness: started, not draining; the last status of each probe for humans."""
        probes = {name: r.status.value for name, r in sorted(self.last_results.items())}
        ok = self.scheduler.running and not self._stop.is_set()
        details: dict[str, Any] = {"environment": self._config.environment, "probes": probes}
        # Extra facts (e.g. the store's state) inform humans; they never make the daemon unready:
        # probing works without the store.
        for extra in self._ready_details:
            details.update(extra())
        return ok, details

    # --- lifecycle ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM/SIGINT do)."""
        if not self._stop.is_set():
            self._log.info("daemon.stopping", grace_s=self.grace_s)
        self._stop.set()

    def request_reload(self) -> None:
        """Reload the config file in the background (what SIGHUP does)."""
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self.reload())

    async def reload(self, new: Config | None = None) -> bool:
        """Swap in ``new`` (or the re-read config file). On any error keep the old config."""
        try:
            if new is None:
                if self.config_path is None:
                    raise ConfigError("no config file to reload from")
                new = await asyncio.to_thread(load_config, self.config_path)
            if new.listen != self._config.listen:
                self._log.warning("config.listen_unchanged", reason="listen takes effect on restart")
            runner = self._make_runner(new)
        except Exception as exc:
            self.metrics.config_reload(ok=False)
            self._log.error("config.reload_failed", error=str(exc), keeping="previous config")
            return False
        old_names = {p.name for p in self._config.probes}
        # Old and new secrets stay masked: runs in flight and the Slack notifier (rebuilt only on
        # restart) still hold the old values.
        self._masker.update([*self._config.secret_values(), *new.secret_values()])
        self._config = new
        self.runner = runner
        self.metrics.declare((p.name for p in new.probes), intervals={p.name: p.interval for p in new.probes})
        for removed in old_names - {p.name for p in new.probes}:
            self.metrics.forget(removed)
            self.last_results.pop(removed, None)
        if self.scheduler.running:
            self.scheduler.update(new.probes)
        await self._run_hooks("reload", self._reload_hooks, new)
        self.metrics.config_reload(ok=True)
        self._log.info("config.reloaded", probes=[p.name for p in new.probes if p.enabled])
        return True

    async def serve(self, *, install_signals: bool = True) -> int:
        """Run until stopped: HTTP server, scheduler, periodic jobs. Returns the exit code (0)."""
        loop = asyncio.get_running_loop()
        host, port = self._config.listen_address()
        app = build_app(
            registry=self.registry,
            health=self.health,
            ready=self.ready,
            extra_routes=self._extra_routes,
            web=self._config.web,
        )
        self.server = HttpServer(app, host, port, tls=self._config.web.tls_server_config)
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        server_task = self.server.start()
        self.scheduler.start(self._config.probes)
        for job in self._jobs:
            self.scheduler.add_periodic(job.name, job.interval_s, job.func)
        self._log.info(
            "daemon.started",
            environment=self._config.environment,
            listen=f"{host}:{self.server.port}",
            probes=self.scheduler.scheduled(),
            version=synthmon_version(),
        )
        stop_wait = asyncio.create_task(self._stop.wait())
        # If the HTTP server dies (e.g. cannot serve), stop rather than run blind.
        await asyncio.wait({stop_wait, server_task}, return_when=asyncio.FIRST_COMPLETED)
        if server_task.done() and not self._stop.is_set():
            self._log.error("server.exited", error=repr(server_task.exception()))
            self._stop.set()
        stop_wait.cancel()
        drained = await self.scheduler.drain(self.grace_s)
        await self._run_hooks("shutdown", self._shutdown_hooks)
        await self.server.stop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        self._log.info("daemon.stopped", drained=drained)
        return 0

    async def _run_hooks(self, what: str, hooks: Sequence[Callable[..., Any]], *args: Any) -> None:
        for hook in hooks:
            try:
                outcome = hook(*args)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                # One failing hook (a store already gone) must not keep the others from running.
                name = getattr(hook, "__qualname__", repr(hook))
                self._log.exception(f"daemon.{what}_hook_failed", hook=name)


#: A daemon ready to :meth:`Daemon.serve` or :meth:`Daemon.run_once`. The constructor is the
#: factory: a wrapper repeating its signature would only be a second list to keep in step.
build_daemon = Daemon


# --- history, incidents and notifications (issue #5) -----------------------------------------


#: How long shutdown waits for the history and incident queues to reach the store. ECS SIGKILLs
#: 30 s after SIGTERM and the probe drain may take most of that (--grace 25 s).
SHUTDOWN_FLUSH_S = 3.0


@dataclass
class HistoryAlerting:
    """What the daemon plugs in: result sinks, periodic jobs, HTTP routes; ``close()`` at shutdown.

    The store may not be open yet (``gate``): the sinks queue in memory until it is.
    """

    store: SqlStore
    sinks: list[ResultSink]
    jobs: list[JobLike]
    routes: list[BaseRoute]
    dispatcher: Dispatcher
    notifiers: dict[str, Notifier] = field(default_factory=dict)
    incidents: IncidentSink | None = None
    history: HistorySink | None = None
    gate: StoreGate | None = None
    executor: StoreExecutor | None = None
    store_url: str = ""
    logger: Any = None

    def status(self) -> dict[str, Any]:
        """The store's state for ``/api/v1/store`` (and readiness): open or not, what waits in memory."""
        details: dict[str, Any] = {"store": self.store_url}
        if self.gate is not None:
            details.update(self.gate.status())
        details["history_buffered"] = self.history.depth if self.history is not None else 0
        details["incidents_buffered"] = self.incidents.depth if self.incidents is not None else 0
        return details

    async def close(self, timeout_s: float = SHUTDOWN_FLUSH_S) -> None:
        """Write what the history and incident queues still hold (for at most ``timeout_s``), then
        release the store and its threads.

        What is still queued afterwards (the database is down or hung) is logged and lost with the
        process: the queues are memory only. A store thread stuck in a database call is abandoned
        (daemon thread), so it cannot keep the process from exiting.
        """
        flushes = [q.flush(timeout_s) for q in (self.history, self.incidents) if q is not None]
        done = await asyncio.gather(*flushes)
        if not all(done):
            log = self.logger if self.logger is not None else structlog.get_logger("synthmon")
            log.warning(
                "store.flush_incomplete",
                history_unwritten=self.history.depth if self.history is not None else 0,
                incidents_unevaluated=self.incidents.depth if self.incidents is not None else 0,
                timeout_s=timeout_s,
            )
        self.store.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


def build_history_alerting(
    store_config: StoreConfig,
    alerting: AlertingConfig,
    dependencies: Mapping[str, Sequence[str]],
    registry: CollectorRegistry,
    clock: Clock,
    *,
    environment: str = "",
    logger: Any = None,
    open_now: bool = True,
) -> HistoryAlerting:
    """Build the store, its sinks, jobs and routes.

    With ``open_now`` the store is opened and migrated right away when it can be; a schema newer
    than this code raises ``monitor.history.migrate.SchemaTooNewError`` (refuse to start). Any
    other failure (database down, DNS, auth) does not: the store is opened in the background
    (:class:`StoreGate`, bounded backoff) while results queue in memory. An unparseable URL raises
    ``sqlalchemy.exc.ArgumentError``.
    """
    engine = create_store_engine(store_config.url)
    store = SqlStore(
        engine,
        retention_days=store_config.retention_days,
        rollup_retention_days=store_config.rollup_retention_days,
    )
    # The store's own threads: a hung database ties up these, never the loop's default executor
    # (which DNS lookups and other to_thread users need).
    executor = StoreExecutor(threads=4)
    store_metrics = StoreMetrics(registry)
    alert_metrics = AlertingMetrics(registry)
    resilience = ResilienceMetrics(registry)
    gate = StoreGate(
        engine,
        monotonic=clock.monotonic,
        run=executor.run,
        on_change=lambda ok: resilience.store_ready.set(1 if ok else 0),
        logger=logger,
        label=store_config.safe_url(),
    )
    if open_now:
        try:
            gate.open_now()
        except BaseException:
            executor.shutdown(wait=False)
            engine.dispose()
            raise
    notifiers: dict[str, Notifier] = {}
    channels = alerting.channels()
    alert_metrics.declare(channels)
    if "slack" in channels:
        notifiers["slack"] = SlackNotifier(alerting.slack, alerting.links)
    if "log" in channels:
        notifiers["log"] = LogNotifier(logger)
    dispatcher = Dispatcher(
        store,
        notifiers,
        clock,
        alert_metrics,
        store_metrics,
        alerting.outbox,
        logger=logger,
        run=executor.run,
        gate=gate,
    )
    history = HistorySink(
        store,
        store_metrics,
        buffer_size=store_config.buffer_size,
        logger=logger,
        run=executor.run,
        gate=gate,
        monotonic=clock.monotonic,
    )
    incidents = IncidentSink(
        store,
        alerting,
        dependencies,
        clock,
        alert_metrics,
        store_metrics,
        logger=logger,
        wake=dispatcher.wake,
        run=executor.run,
        gate=gate,
        buffer_size=store_config.buffer_size,
        buffer_metrics=resilience,
    )
    retention = RetentionJob(store, clock, store_metrics, logger=logger, run=executor.run, gate=gate)
    bundle = HistoryAlerting(
        store=store,
        sinks=[history, incidents],
        jobs=[
            gate.job(),
            history.job(),
            incidents.job(),
            dispatcher.job(),
            retention.job(store_config.prune_interval),
        ],
        routes=[],
        dispatcher=dispatcher,
        notifiers=notifiers,
        incidents=incidents,
        history=history,
        gate=gate,
        executor=executor,
        store_url=store_config.safe_url(),
        logger=logger,
    )
    bundle.routes = api_routes(
        store,
        store,
        clock,
        environment=environment,
        run=executor.run,
        gate=gate,
        store_status=bundle.status,
    )
    return bundle


def probe_dependencies(config: Config) -> dict[str, list[str]]:
    """``depends_on`` of every probe, for incident suppression."""
    return {p.name: list(p.depends_on) for p in config.probes}


def build_monitor(
    config: Config,
    *,
    registry: CollectorRegistry,
    clock: Clock,
    logger: Any,
    masker: SecretMasker | None = None,
    config_path: str | Path | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    extra_sinks: Sequence[ResultSink] = (),
) -> Daemon:
    """The production daemon: probes, metrics, history, incidents and notifications.

    Tries to open (and migrate) the store first; raises ``monitor.history.migrate.SchemaError``
    when the database holds a schema newer than this code, and ``sqlalchemy.exc.ArgumentError``
    for an unparseable store URL. A database that cannot be reached does not stop the start: it is
    opened in the background while probing runs (see :func:`build_history_alerting`).
    """
    ha = build_history_alerting(
        config.store,
        config.alerting,
        probe_dependencies(config),
        registry,
        clock,
        environment=config.environment,
        logger=logger,
    )
    incidents = ha.incidents
    running = config.alerting  # the channels in use: notifiers are built once, at start-up
    last_seen = config.alerting

    def same_channels(a: AlertingConfig, b: AlertingConfig) -> bool:
        return a.channels() == b.channels() and a.slack == b.slack

    def reload_alerting(new: Config) -> None:
        nonlocal last_seen
        # Without this, a SIGHUP would reload probes but keep the start-up incident rules,
        # maintenance windows and depends_on: a window added for a deploy would not hold the page.
        if incidents is not None:
            incidents.reconfigure(new.alerting, probe_dependencies(new))
        # Warn once per change of the channel settings, not on every later reload of the same file;
        # a file changed back to what is running needs no warning at all.
        if not same_channels(new.alerting, running) and not same_channels(new.alerting, last_seen):
            logger.warning("alerting.channels_unchanged", reason="notification channels change on restart")
        last_seen = new.alerting

    return build_daemon(
        config,
        registry=registry,
        clock=clock,
        logger=logger,
        masker=masker,
        sinks=[*ha.sinks, *extra_sinks],
        extra_routes=ha.routes,
        jobs=ha.jobs,
        shutdown_hooks=[ha.close],
        reload_hooks=[reload_alerting],
        config_path=config_path,
        grace_s=grace_s,
        ready_details=[lambda: {"store": ha.status()}],
    )
