"""The incident sink: feeds each result to the state machine inside the store's per-probe transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from monitor.alerting.base import Event
from monitor.alerting.config import AlertingConfig
from monitor.alerting.incidents import IncidentState, Phase, Upstream, transition
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.silences import silenced_by
from monitor.history.base import IncidentStore, IncidentView
from monitor.history.metrics import StoreMetrics
from monitor.results import ProbeResult
from probes.base import Clock


def open_upstream(upstreams: Mapping[str, IncidentState], order: Sequence[str]) -> Upstream | None:
    """The first of ``order`` with an open incident, as the thread to join (its root incident)."""
    for name in order:
        state = upstreams.get(name)
        if state is not None and state.phase is Phase.OPEN and state.incident_id:
            return Upstream(probe=state.incident_probe or name, incident_id=state.incident_id)
    return None


class IncidentSink:
    """A :class:`monitor.results.ResultSink` that turns results into incident events in the outbox.

    The state change and its outbox rows are one transaction (``IncidentStore.transition``), so an
    event is queued exactly when its state change is stored. ``dependencies`` maps a probe to its
    ``depends_on`` list. ``wake`` is called when events were queued (e.g. to run the dispatcher now).
    A store failure is counted and logged; that result is then not evaluated (the next one is).
    """

    def __init__(
        self,
        store: IncidentStore,
        config: AlertingConfig,
        dependencies: Mapping[str, Sequence[str]],
        clock: Clock,
        metrics: AlertingMetrics,
        store_metrics: StoreMetrics,
        *,
        wake: Callable[[], None] | None = None,
        logger: Any = None,
    ) -> None:
        self._store = store
        self._config = config
        self._deps = {k: tuple(v) for k, v in dependencies.items()}
        self._clock = clock
        self._metrics = metrics
        self._store_metrics = store_metrics
        self._wake = wake
        self._channels = config.channels()
        self._log = logger if logger is not None else structlog.get_logger("synthmon.alerting")

    def reconfigure(self, config: AlertingConfig, dependencies: Mapping[str, Sequence[str]]) -> None:
        """Apply a reloaded config (SIGHUP): rules, maintenance windows and ``depends_on``.

        They take effect with the next result. The channels stay as they were: the notifiers behind
        them are built at start-up, so a changed Slack setting needs a restart.
        """
        self._config = config
        self._deps = {k: tuple(v) for k, v in dependencies.items()}

    async def handle(self, result: ProbeResult) -> None:
        """Evaluate ``result``; never raises."""
        now = self._clock.now()
        probe = result.probe
        rule = self._config.rule_for(probe)
        upstream_names = self._deps.get(probe, ())

        def decide(view: IncidentView) -> tuple[IncidentState, list[Event]]:
            held = silenced_by(probe, now, self._config.maintenance, view.silences)
            upstream = open_upstream(view.upstreams, upstream_names)
            return transition(view.state, result, rule, now, upstream=upstream, silenced=held is not None)

        try:
            events = await asyncio.to_thread(
                self._store.transition, probe, upstream_names, now, decide, self._channels
            )
        except Exception as exc:  # the store being down must never stop probing
            self._store_metrics.errors.labels(operation="incident_transition").inc()
            self._log.warning("incident_transition_failed", probe=probe, error=type(exc).__name__)
            return
        for event in events:
            self._metrics.events.labels(probe=probe, kind=event.kind.value).inc()
            self._log.info(
                "incident_event",
                probe=probe,
                kind=event.kind.value,
                incident=event.incident_id,
                step=event.step,
            )
        if events and self._wake is not None:
            self._wake()
