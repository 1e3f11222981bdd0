"""Assembly of history + alerting for ``monitor/app.py``: one call returns sinks, jobs and routes.

This is the one place outside ``app.py`` that names the concrete store and notifier classes; it
exists so the daemon's wiring of issue #5 is a few lines (see ``docs/history-alerting.md``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.routing import BaseRoute

from monitor.alerting.base import Notifier
from monitor.alerting.config import AlertingConfig
from monitor.alerting.log import LogNotifier
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.outbox import Dispatcher
from monitor.alerting.sink import IncidentSink
from monitor.alerting.slack import SlackNotifier
from monitor.history.api import routes as api_routes
from monitor.history.config import StoreConfig
from monitor.history.metrics import StoreMetrics
from monitor.history.retention import RetentionJob
from monitor.history.sink import HistorySink
from monitor.history.sqlstore import SqlStore
from monitor.results import ResultSink
from probes.base import Clock

Job = tuple[str, float, Callable[[], Awaitable[Any]]]


@dataclass
class HistoryAlerting:
    """What the daemon plugs in: result sinks, periodic jobs, HTTP routes; ``close()`` at shutdown."""

    store: SqlStore
    sinks: list[ResultSink]
    jobs: list[Job]
    routes: list[BaseRoute]
    dispatcher: Dispatcher
    notifiers: dict[str, Notifier] = field(default_factory=dict)

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()


def build_history_alerting(
    store_config: StoreConfig,
    alerting: AlertingConfig,
    dependencies: Mapping[str, Sequence[str]],
    registry: CollectorRegistry,
    clock: Clock,
    *,
    environment: str = "",
    logger: Any = None,
) -> HistoryAlerting:
    """Open the store (migrating; raises ``SchemaError`` on a newer schema) and build everything."""
    store = SqlStore.open(
        store_config.url,
        retention_days=store_config.retention_days,
        rollup_retention_days=store_config.rollup_retention_days,
    )
    store_metrics = StoreMetrics(registry)
    alert_metrics = AlertingMetrics(registry)
    notifiers: dict[str, Notifier] = {}
    channels = alerting.channels()
    if "slack" in channels:
        notifiers["slack"] = SlackNotifier(alerting.slack, alerting.links)
    if "log" in channels:
        notifiers["log"] = LogNotifier(logger)
    dispatcher = Dispatcher(
        store, notifiers, clock, alert_metrics, store_metrics, alerting.outbox, logger=logger
    )
    history = HistorySink(store, store_metrics, buffer_size=store_config.buffer_size, logger=logger)
    incidents = IncidentSink(
        store, alerting, dependencies, clock, alert_metrics, store_metrics, logger=logger
    )
    retention = RetentionJob(store, clock, store_metrics, logger=logger)
    return HistoryAlerting(
        store=store,
        sinks=[history, incidents],
        jobs=[history.job(), dispatcher.job(), retention.job(store_config.prune_interval)],
        routes=api_routes(store, store, clock, environment=environment),
        dispatcher=dispatcher,
        notifiers=notifiers,
    )
