"""The running daemon: scheduler, runner, metrics, sinks and HTTP server on one event loop.

config -> scheduler -> runner -> result -> every :class:`ResultTransformer` -> ``metrics.record``
-> every :class:`ResultSink`.

:class:`Daemon` knows no feature: history, incidents and notifications (and anything else) plug in
as result sinks, HTTP routes, periodic jobs and shutdown/reload hooks, wired by :mod:`monitor.app`.
A sink that raises is logged and counted (``synthmon_sink_errors_total``) and never stops probing.

Signals (installed by :meth:`Daemon.serve`): SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the
config file: a valid new config replaces the old one (probes added, removed or rescheduled), an
invalid one is logged with its reason and counted, and the old one keeps running.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry
from starlette.routing import BaseRoute

from monitor.config import Config, load_config
from monitor.configfile import ConfigError
from monitor.location import DEFAULT_LOCATION
from monitor.metrics import Metrics
from monitor.results import ProbeResult, ResultSink, ResultTransformer
from monitor.runner import ClientFactory, Runner, default_client_factory, select_probes
from monitor.scheduler import ProbeScheduler
from monitor.server import HttpServer, build_app
from monitor.version import synthmon_version
from monitor.watchdog import EXIT_STUCK, Watchdog
from probes.base import Clock
from probes.support.masking import SecretMasker
from probes.support.zygote import Zygote

#: ECS stops a task with SIGTERM and SIGKILLs it 30 s later; finish before that.
DEFAULT_GRACE_S = 25.0


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
#: Called once when the daemon starts serving, in the background (warming caches); sync or async.
StartHook = Callable[[], Awaitable[Any] | Any]
#: Config fields a reload cannot apply: the HTTP server, the store and the location are built once at
#: start-up. A reload that changes them says so instead of seeming to take them.
RESTART_FIELDS = ("listen", "web", "store", "location")
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
        transformers: Sequence[ResultTransformer] = (),
        extra_routes: Sequence[BaseRoute] = (),
        jobs: Sequence[JobLike] = (),
        shutdown_hooks: Sequence[ShutdownHook] = (),
        start_hooks: Sequence[StartHook] = (),
        reload_hooks: Sequence[ReloadHook] = (),
        config_path: str | Path | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        stagger_s: float = 5.0,
        heartbeat_s: float = 5.0,
        client_factory: ClientFactory | None = None,
        ready_details: Sequence[Callable[[], dict[str, Any]]] = (),
        watchdog_s: float = 0.0,
        on_stuck: Callable[[float], None] | None = None,
        location: str = DEFAULT_LOCATION,
        zygote: Zygote | None = None,
        known_job_error: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self._config = config
        #: Where this daemon probes from (resolved once at start-up; a change needs a restart).
        self.location = location
        self._clock = clock
        self._log = logger
        # Without a masker of the caller's, mask this config's secrets.
        self._masker = masker if masker is not None else SecretMasker(config.secret_values())
        # One factory for the daemon's life: it holds the shared TLS context.
        self._client_factory = client_factory or default_client_factory()
        # Likewise one zygote, started at the first isolated run, stopped when serve/run_once end.
        self.zygote = zygote if zygote is not None else Zygote(logger=logger)
        self.registry = registry
        self.metrics = Metrics(registry, version=synthmon_version())
        self.sinks: list[ResultSink] = list(sinks)
        self.transformers: list[ResultTransformer] = list(transformers)
        self.metrics.declare(
            (p.name for p in config.probes),
            intervals={p.name: p.interval for p in config.probes},
            sinks=[type(s).__name__ for s in self.sinks],
        )
        self._ready_details = list(ready_details)
        self._jobs = [PeriodicJob(*job) for job in jobs]
        self._shutdown_hooks = list(shutdown_hooks)
        self._start_hooks = list(start_hooks)
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
            known_error=known_job_error,
            stagger_s=stagger_s,
            heartbeat_s=heartbeat_s,
        )
        self.server: HttpServer | None = None
        self.last_results: dict[str, ProbeResult] = {}
        self._stop = asyncio.Event()
        self._reloading: asyncio.Task[bool] | None = None
        self.watchdog = Watchdog(self._heartbeat_age, watchdog_s, on_stuck or self._exit_stuck)

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
            location=self.location,
            zygote=self.zygote,
        )

    # --- the pipeline ------------------------------------------------------------------------

    async def run_and_publish(self, name: str) -> ProbeResult:
        """Run one probe and hand the result to metrics and every sink; the result as published."""
        return await self.publish(await self.runner.run(name))

    async def publish(self, result: ProbeResult) -> ProbeResult:
        """Transformers first (a failing one passes the result on unchanged), then metrics, then each
        sink in order; a failing sink is logged and counted. Returns the result as published."""
        for transformer in self.transformers:
            try:
                result = await transformer.transform(result)
            except Exception:
                self.metrics.sink_error(type(transformer).__name__)
                self._log.exception(
                    "transformer.failed", transformer=type(transformer).__name__, probe=result.probe
                )
        self.last_results[result.probe] = result
        self.metrics.record(result)
        for sink in self.sinks:
            sink_name = type(sink).__name__
            try:
                await sink.handle(result)
            except Exception:
                self.metrics.sink_error(sink_name)
                self._log.exception("sink.failed", sink=sink_name, probe=result.probe, run_id=result.run_id)
        return result

    async def run_once(self, names: Sequence[str] = ()) -> list[ProbeResult]:
        """Run the selected probes (every enabled one when empty) concurrently, in config order.

        A one-shot call: the zygote, if a run started one, is stopped before it returns."""
        probes = select_probes(self._config, names)
        try:
            results = await asyncio.gather(*(self.run_and_publish(p.name) for p in probes))
        finally:
            await self.zygote.close()
        return list(results)

    # --- health ------------------------------------------------------------------------------

    def _heartbeat_age(self) -> float | None:
        """Seconds since the scheduler last fired (None before it started)."""
        last = self.scheduler.last_tick
        return None if last is None else self._clock.monotonic() - last

    def _exit_stuck(self, age: float) -> None:
        """What the watchdog does by default: say why, then exit non-zero at once (the event loop is
        stuck, so a graceful drain cannot run)."""
        self._log.error(
            "daemon.stuck", heartbeat_age_s=round(age, 1), limit_s=self.watchdog.limit_s, exit_code=EXIT_STUCK
        )
        os._exit(EXIT_STUCK)

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
            restart = [name for name in RESTART_FIELDS if getattr(new, name) != getattr(self._config, name)]
            if restart:
                self._log.warning(
                    "config.restart_needed",
                    fields=restart,
                    reason="these take effect on restart; the daemon keeps the values it started with",
                )
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
            metric_labels={"location": self.location},
        )
        self.server = HttpServer(app, host, port, tls=self._config.web.tls_server_config)
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        server_task = self.server.start()
        self.scheduler.start(self._config.probes)
        self.watchdog.start()
        for job in self._jobs:
            self.scheduler.add_periodic(job.name, job.interval_s, job.func)
        # In the background: serving and probing do not wait for a cache to warm.
        starting = asyncio.create_task(self._run_hooks("start", self._start_hooks))
        self._log.info(
            "daemon.started",
            environment=self._config.environment,
            location=self.location,
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
        starting.cancel()
        self.watchdog.stop()
        drained = await self.scheduler.drain(self.grace_s)
        await self.zygote.close()
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
