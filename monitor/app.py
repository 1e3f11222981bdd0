"""Wiring: the only module that names concrete classes.

:func:`build_monitor` is the production daemon: :class:`monitor.daemon.Daemon` plus the store
(:mod:`monitor.store`), history (:mod:`monitor.history`), incidents and notifications
(:mod:`monitor.alerting`) and the API over both (:mod:`monitor.api`), each given what it needs
through its constructor. The feature packages never see each other: they meet here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from starlette.routing import BaseRoute

from monitor.alerting.base import Notifier
from monitor.alerting.config import AlertingConfig
from monitor.alerting.log import LogNotifier
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.outbox import Dispatcher
from monitor.alerting.sink import IncidentSink
from monitor.alerting.sqlstore import SqlAlertingStore
from monitor.api import WARM_EVERY_S, StatusApi
from monitor.baselines.config import BaselinesConfig
from monitor.baselines.metrics import BaselineMetrics
from monitor.baselines.service import LatencyBaselines
from monitor.config import Config
from monitor.daemon import DEFAULT_GRACE_S, Daemon, JobLike, StartHook
from monitor.history.metrics import HistoryMetrics
from monitor.history.sink import HistorySink
from monitor.history.sqlstore import SqlHistoryStore
from monitor.location import DEFAULT_LOCATION, resolve_location
from monitor.results import ResultSink, ResultTransformer
from monitor.slo.config import SloConfig
from monitor.slo.service import EVALUATE_EVERY_S, SloMetrics, SloService
from monitor.store.config import StoreConfig
from monitor.store.database import Database
from monitor.store.engine import StoreExecutor, create_store_engine
from monitor.store.metrics import StoreMetrics
from monitor.store.migrate import StoreGate, upgrade, upgrade_in_child
from monitor.store.outage import is_outage
from monitor.store.retention import RetentionJob
from probes.base import Clock
from probes.support.masking import SecretMasker

#: A daemon without store, history or alerting (``synthmon once``, ``report --run``), ready to
#: :meth:`Daemon.serve` or :meth:`Daemon.run_once`. The constructor is the factory: a wrapper
#: repeating its signature would only be a second list to keep in step.
build_daemon = Daemon


#: How long shutdown waits for the history and incident queues to reach the store. ECS SIGKILLs
#: 30 s after SIGTERM and the probe drain may take most of that (--grace 25 s).
SHUTDOWN_FLUSH_S = 3.0
#: How long results gather before the history queue writes them in one transaction.
HISTORY_LINGER_S = 1.0


@dataclass
class StoreFeatures:
    """What the store-backed features plug into the daemon: result sinks, periodic jobs, HTTP routes;
    ``close()`` at shutdown.

    The store may not be open yet (``gate``): the sinks queue in memory until it is.
    """

    db: Database
    history_store: SqlHistoryStore
    alerting_store: SqlAlertingStore
    sinks: list[ResultSink]
    jobs: list[JobLike]
    routes: list[BaseRoute]
    dispatcher: Dispatcher
    notifiers: dict[str, Notifier] = field(default_factory=dict)
    #: Run once when the daemon starts serving (see :class:`monitor.daemon.Daemon`).
    start_hooks: list[StartHook] = field(default_factory=list)
    incidents: IncidentSink | None = None
    history: HistorySink | None = None
    baselines: LatencyBaselines | None = None
    transformers: list[ResultTransformer] = field(default_factory=list)
    slo: SloService | None = None
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
        self.db.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


def build_store_features(
    store_config: StoreConfig,
    alerting: AlertingConfig,
    dependencies: Mapping[str, Sequence[str]],
    registry: CollectorRegistry,
    clock: Clock,
    *,
    environment: str = "",
    location: str = DEFAULT_LOCATION,
    logger: Any = None,
    open_now: bool = True,
    baselines_config: BaselinesConfig | None = None,
    slos: Sequence[SloConfig] = (),
    spacing: Mapping[str, float] | None = None,
    migrate: Callable[[Engine], str] = upgrade,
) -> StoreFeatures:
    """Build the store, history, incidents, notifications and the API: sinks, jobs and routes.

    With ``open_now`` the store is opened and migrated right away when it can be; a schema newer
    than this code raises ``monitor.store.migrate.SchemaTooNewError`` (refuse to start). Any
    other failure (database down, DNS, auth) does not: the store is opened in the background
    (:class:`StoreGate`, bounded backoff) while results queue in memory. An unparseable URL raises
    ``sqlalchemy.exc.ArgumentError``. ``migrate`` creates or upgrades the schema (the daemon's runs
    Alembic in a child process, see :func:`build_monitor`).
    """
    store_metrics = StoreMetrics(registry)

    def file_changed(reason: str) -> None:
        # A SQLite file deleted or replaced under the daemon: counted, and the gate re-creates the
        # schema in the new file before the next write (which the queues retry meanwhile).
        store_metrics.file_changes.labels(reason=reason).inc()
        gate.invalidate(reason)

    engine = create_store_engine(store_config.url, on_file_changed=file_changed)
    db = Database(engine)
    history_store = SqlHistoryStore(
        db,
        retention_days=store_config.retention_days,
        rollup_retention_days=store_config.rollup_retention_days,
    )
    alerting_store = SqlAlertingStore(db, retention_days=store_config.retention_days)
    # The store's own threads: a hung database ties up these, never the loop's default executor
    # (which DNS lookups and other to_thread users need).
    executor = StoreExecutor(threads=4)
    history_metrics = HistoryMetrics(registry)
    alert_metrics = AlertingMetrics(registry)
    gate = StoreGate(
        engine,
        monotonic=clock.monotonic,
        run=executor.run,
        on_change=lambda ok: store_metrics.ready.set(1 if ok else 0),
        logger=logger,
        label=store_config.safe_url(),
        migrate=migrate,
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
        # Imported here: slack-sdk and its block models are about 3 MB a daemon without Slack never needs.
        from monitor.alerting.slack import SlackNotifier

        notifiers["slack"] = SlackNotifier(alerting.slack, alerting.links)
    if "log" in channels:
        notifiers["log"] = LogNotifier(logger)
    dispatcher = Dispatcher(
        alerting_store,
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
        history_store,
        history_metrics,
        store_metrics,
        buffer_size=store_config.buffer_size,
        logger=logger,
        run=executor.run,
        gate=gate,
        monotonic=clock.monotonic,
        # One transaction per second at most, however many probes finish in it (history is read
        # by people and the API, for whom a second is nothing).
        linger_s=HISTORY_LINGER_S,
    )
    incidents = IncidentSink(
        alerting_store,
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
        location=location,
        spacing=spacing,
    )
    baselines = LatencyBaselines(
        history_store,
        baselines_config or BaselinesConfig(),
        clock,
        BaselineMetrics(registry),
        run=executor.run,
        ready=lambda: gate.ready,
        logger=logger,
    )
    # SLO burns are judged by the incident path like a probe's runs (``dependencies`` must hold
    # each SLO's pseudo-probe, see probe_dependencies, so a burn joins its probe's incident).
    slo = SloService(
        slos,
        history_store,
        clock,
        SloMetrics(registry),
        feed=incidents.handle,
        environment=environment,
        location=location,
        run=executor.run,
        gate=gate,
        logger=logger,
    )
    retention = RetentionJob(
        [history_store, alerting_store], clock, store_metrics, logger=logger, run=executor.run, gate=gate
    )
    features = StoreFeatures(
        db=db,
        history_store=history_store,
        alerting_store=alerting_store,
        sinks=[history, incidents],
        jobs=[
            gate.job(),
            history.job(),
            incidents.job(),
            dispatcher.job(),
            retention.job(store_config.prune_interval),
            incidents.heartbeat_job(),
            slo.job(),
        ],
        routes=[],
        dispatcher=dispatcher,
        notifiers=notifiers,
        incidents=incidents,
        history=history,
        baselines=baselines,
        transformers=[baselines],
        slo=slo,
        gate=gate,
        executor=executor,
        store_url=store_config.safe_url(),
        logger=logger,
    )
    status_api = StatusApi(
        history_store,
        alerting_store,
        clock,
        environment=environment,
        location=location,
        run=executor.run,
        gate=gate,
        store_status=features.status,
        dependencies=dependencies,
        latency=baselines.view,
        sections=[slo.page_section],
        renew=history_store.renew_settled,
    )
    # The status read warmed at start-up and kept warm, so neither the first request after a restart
    # nor one a minute later pays the cold read (see StatusApi.warm).
    features.routes = [*status_api.routes(), *slo.routes()]
    features.start_hooks.append(status_api.warm)
    features.jobs.append(("status-warm", WARM_EVERY_S, status_api.keep_warm))
    return features


def probe_dependencies(config: Config) -> dict[str, list[str]]:
    """``depends_on`` of every probe, for incident suppression; each SLO's pseudo-probe depends on
    its probe, so its burn joins the probe's open incident."""
    deps = {p.name: list(p.depends_on) for p in config.probes}
    deps.update({slo.pseudo_probe: [slo.probe] for slo in config.slos})
    return deps


def probe_spacing(config: Config) -> dict[str, float]:
    """The longest time between two runs of each probe from one location (interval + jitter +
    timeout; an SLO's pseudo-probe: two evaluations): the quorum window stretches to it, so the
    locations' failures of a probe run less often than the window still overlap."""
    spacing = {p.name: p.interval + p.jitter + p.timeout for p in config.probes}
    spacing.update({slo.pseudo_probe: 2 * EVALUATE_EVERY_S for slo in config.slos})
    return spacing


def build_monitor(
    config: Config,
    *,
    registry: CollectorRegistry,
    clock: Clock,
    logger: Any,
    masker: SecretMasker | None = None,
    config_path: str | Path | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    watchdog_s: float = 0.0,
    extra_sinks: Sequence[ResultSink] = (),
) -> Daemon:
    """The production daemon: probes, metrics, history, incidents and notifications.

    Tries to open (and migrate) the store first; raises ``monitor.store.migrate.SchemaError``
    when the database holds a schema newer than this code, and ``sqlalchemy.exc.ArgumentError``
    for an unparseable store URL. A database that cannot be reached does not stop the start: it is
    opened in the background while probing runs (see :func:`build_store_features`).

    The daemon's location is resolved here, once (config, ``SYNTHMON_LOCATION``, ECS task
    metadata, default: :mod:`monitor.location`); a changed ``location:`` needs a restart.
    """
    location = resolve_location(config.location, os.environ, logger=logger)
    features = build_store_features(
        config.store,
        config.alerting,
        probe_dependencies(config),
        registry,
        clock,
        environment=config.environment,
        location=location,
        logger=logger,
        baselines_config=config.baselines,
        slos=config.slos,
        spacing=probe_spacing(config),
        # A daemon runs for months and migrates at most once per upgrade: the migration machinery
        # (Alembic, Mako, Pygments: about 8 MB) is loaded by a child that exits, never by the daemon.
        migrate=upgrade_in_child,
    )
    incidents = features.incidents
    baselines = features.baselines
    running = config.alerting  # the channels in use: notifiers are built once, at start-up
    last_seen = config.alerting

    def same_channels(a: AlertingConfig, b: AlertingConfig) -> bool:
        return a.channels() == b.channels() and a.slack == b.slack

    def reload_alerting(new: Config) -> None:
        nonlocal last_seen
        # Without this, a SIGHUP would reload probes but keep the start-up incident rules,
        # maintenance windows and depends_on: a window added for a deploy would not hold the page.
        if incidents is not None:
            incidents.reconfigure(new.alerting, probe_dependencies(new), probe_spacing(new))
        if baselines is not None:
            baselines.reconfigure(new.baselines)
        if features.slo is not None:
            features.slo.reconfigure(new.slos)
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
        sinks=[*features.sinks, *extra_sinks],
        transformers=features.transformers,
        extra_routes=features.routes,
        jobs=features.jobs,
        shutdown_hooks=[features.close],
        start_hooks=features.start_hooks,
        reload_hooks=[reload_alerting],
        config_path=config_path,
        grace_s=grace_s,
        watchdog_s=watchdog_s,
        ready_details=[lambda: {"store": features.status()}],
        location=location,
        known_job_error=is_outage,
    )
