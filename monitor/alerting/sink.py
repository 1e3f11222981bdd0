"""The incident sink: feeds each result to correlation and the state machine inside the store's
transition transaction (see :mod:`monitor.alerting.correlation`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import structlog

from monitor.alerting.base import Event
from monitor.alerting.config import AlertingConfig, IncidentRule
from monitor.alerting.correlation import conclude, correlate
from monitor.alerting.incidents import IncidentState, Phase, Verdict, failing_step, transition, verdict
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.quorum import HEARTBEAT_S, LocationView, failing_locations, gate, observe, required
from monitor.alerting.silences import silenced_by
from monitor.alerting.store import Here, IncidentStore, IncidentView
from monitor.location import DEFAULT_LOCATION
from monitor.results import ProbeResult
from monitor.store.engine import RunInThread
from monitor.store.metrics import StoreMetrics
from monitor.store.migrate import StoreGate
from monitor.store.outage import is_outage
from monitor.store.queue import WriteQueue
from probes.base import Clock

#: How old this process's last view of a probe's state may be to skip a transaction on a good run.
KNOWN_STATE_MAX_AGE_S = 60.0


class IncidentSink:
    """A :class:`monitor.results.ResultSink` that turns results into incident events in the outbox.

    The state change and its outbox rows are one transaction (``IncidentStore.transition``), so an
    event is queued exactly when its state change is stored. ``dependencies`` maps a probe to its
    ``depends_on`` list. ``wake`` is called when events were queued (e.g. to run the dispatcher now).

    ``handle`` never waits for the database: the result and the time it arrived go to a bounded
    queue (:class:`monitor.store.queue.WriteQueue`) drained in order by a background task. While
    the store is down (or not yet opened, ``gate``) results wait there and are evaluated in arrival
    order, each at the time it arrived, once the store is back; so a platform outage that overlaps
    a database outage still pages. A result the store rejects for another reason (a bug, bad data)
    is counted, logged and skipped, so it cannot block the queue.

    ``location`` is where this daemon probes from: each result updates that location's view of its
    probe, and the probe's incident counts the run only as the quorum of locations allows
    (:mod:`monitor.alerting.quorum`). ``spacing`` maps a probe to the longest time between two of
    its runs from one location (interval + jitter + timeout): the quorum window is stretched to it,
    else the locations' failures of a probe run less often than the window never overlap.
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
        run: RunInThread | None = None,
        gate: StoreGate | None = None,
        buffer_size: int = 10_000,
        location: str = DEFAULT_LOCATION,
        spacing: Mapping[str, float] | None = None,
    ) -> None:
        self._store = store
        self._spacing = dict(spacing or {})
        self.location = location
        self._config = config
        self._deps = {k: tuple(v) for k, v in dependencies.items()}
        #: probe -> (its state after this process's last transition of it, monotonic time then)
        self._known: dict[str, tuple[IncidentState, float]] = {}
        #: probe -> this location's view of it after this process's last transition
        self._views: dict[str, LocationView] = {}
        self._clock = clock
        self._metrics = metrics
        self._store_metrics = store_metrics
        self._wake = wake
        self._channels = config.channels()
        self._gate = gate
        self._run: RunInThread = run or asyncio.to_thread
        self._log = logger if logger is not None else structlog.get_logger("synthmon.alerting")
        self._queue: WriteQueue[tuple[ProbeResult, datetime]] = WriteQueue(
            "incident",
            self._evaluate,
            capacity=buffer_size,
            batch=50,
            monotonic=clock.monotonic,
            gate=gate,
            on_depth=metrics.incident_buffer_depth.set,
            on_dropped=metrics.incident_buffer_dropped.inc,
            logger=self._log,
        )

    @property
    def depth(self) -> int:
        """Results waiting for evaluation."""
        return self._queue.depth

    def _forget_known(self) -> None:
        self._known.clear()

    def reconfigure(
        self,
        config: AlertingConfig,
        dependencies: Mapping[str, Sequence[str]],
        spacing: Mapping[str, float] | None = None,
    ) -> None:
        """Apply a reloaded config (SIGHUP): rules, maintenance windows, ``depends_on``, spacing.

        They take effect with the next evaluation. The channels stay as they were: the notifiers
        behind them are built at start-up, so a changed Slack setting needs a restart.
        """
        self._config = config
        self._deps = {k: tuple(v) for k, v in dependencies.items()}
        self._spacing = dict(spacing or {})
        self._forget_known()  # new rules may judge the same run differently

    async def handle(self, result: ProbeResult) -> None:
        """Queue ``result`` for evaluation (stamped with the time now). Returns at once; never raises."""
        self._queue.put((result, self._clock.now()))

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Evaluate everything queued now; True when nothing is left. Bounded by ``timeout_s``."""
        return await self._queue.flush(timeout_s)

    def job(self, interval_s: float = 10.0) -> tuple[str, float, Callable[[], Awaitable[Any]]]:
        """The periodic retry: evaluates what waited through an outage even when no result comes."""
        return self._queue.job("incident-flush", interval_s)

    def heartbeat_job(self) -> tuple[str, float, Callable[[], Awaitable[Any]]]:
        """The periodic "this location is live" (the quorum's size counts live locations)."""

        async def beat() -> None:
            if self._gate is not None and not self._gate.ready:
                return  # the store is not open: the gate retries it, results wait in the queue
            try:
                await self._run(self._store.heartbeat, self.location, self._clock.now())
            except Exception as exc:
                # Counted like every store failure; the next beat (or transition) retries it.
                self._store_metrics.errors.labels(operation="location_heartbeat").inc()
                self._log.warning(
                    "location_heartbeat_failed", location=self.location, error=type(exc).__name__
                )

        return ("location-heartbeat", HEARTBEAT_S, beat)

    async def _evaluate(self, batch: list[tuple[ProbeResult, datetime]]) -> int:
        for i, (result, now) in enumerate(batch):
            try:
                events = await self._transition(result, now)
            except Exception as exc:
                self._store_metrics.errors.labels(operation="incident_transition").inc()
                if is_outage(exc):
                    self._log.warning(
                        "incident_transition_failed",
                        probe=result.probe,
                        error=type(exc).__name__,
                        waiting=self._queue.depth - i,
                    )
                    return i
                self._metrics.incident_buffer_dropped.inc()
                self._log.error(
                    "incident_result_dropped",
                    probe=result.probe,
                    run_id=result.run_id,
                    error=type(exc).__name__,
                )
                continue
            self._announce(result.probe, events)
        return len(batch)

    def _nothing_to_decide(self, result: ProbeResult, rule: IncidentRule) -> bool:
        """True when the state machine could not change this probe's state in any way that matters:
        a good run of a probe known (recently, from this process's own last transition) to be fine.

        The transaction is then skipped: on a healthy platform that is nearly every run. The state
        read back is at most :data:`KNOWN_STATE_MAX_AGE_S` old, so an incident opened by another
        replica is still seen and resolved by this one's good runs within that time.
        """
        judged = verdict(result, rule)
        if judged is Verdict.NEUTRAL:
            return True  # "could not check" changes no counter (bookkeeping only)
        known = self._known.get(result.probe)
        if known is None or judged is not Verdict.GOOD:
            return False
        state, at = known
        here = self._views.get(result.probe)
        return (
            self._clock.monotonic() - at < KNOWN_STATE_MAX_AGE_S
            and (here is None or not here.failing)
            and state.phase is Phase.OK
            and state.failures == 0
            and state.last_good_status == result.status.value
        )

    async def _transition(self, result: ProbeResult, now: datetime) -> list[Event]:
        probe = result.probe
        config = self._config
        rule = config.rule_for(probe)
        if self._nothing_to_decide(result, rule):
            self._metrics.transitions_skipped.inc()
            return []
        deps = self._deps
        step = failing_step(result)
        cause = step.diagnosis.cause if step is not None and step.diagnosis else None
        judged = verdict(result, rule)
        location = self.location
        window = max(config.quorum.window, self._spacing.get(probe, 0.0))

        def decide(view: IncidentView) -> tuple[IncidentState, list[Event]]:
            failing = failing_locations(view.views.values(), now, window)
            # Live locations that probe this probe at all (a probe may run in some locations only).
            need = required(config.quorum.min_locations, len(view.live & view.views.keys()))
            counted = gate(judged, failing, need)
            mine = view.views.get(location)
            if mine is not None:
                seen.append(mine)
                if mine.failures == 1 and counted is not judged:
                    # Once per streak: the metric and the views show it for as long as it lasts.
                    quorum_wait.append((failing, need))
            held = silenced_by(probe, now, config.maintenance, view.silences)
            join = correlate(
                view.state,
                cause=cause,
                began=view.state.since or result.started_at,
                others=view.others,
                deps=deps,
                config=config.correlation,
            )
            new, events = transition(
                view.state, result, rule, now, upstream=join, silenced=held is not None, judged=counted
            )
            if len(view.live) > 1 or len(view.views) > 1:
                new, events = _name_locations(view.state, new, events, failing)
            decided.append(new)
            return new, conclude(events, new, view.state, view.others, view.records, deps)

        decided: list[IncidentState] = []
        seen: list[LocationView] = []
        quorum_wait: list[tuple[tuple[str, ...], int]] = []
        here = Here(location, lambda old: observe(old or LocationView(probe, location), result, judged, now))
        events: list[Event] = await self._run(
            self._store.transition, probe, now, decide, self._channels, here
        )
        if decided:
            self._known[probe] = (decided[-1], self._clock.monotonic())
        if seen:
            self._views[probe] = seen[-1]
            self._metrics.location_failing.labels(probe=probe, location=location).set(int(seen[-1].failing))
        if quorum_wait:
            failing, need = quorum_wait[-1]
            # Visible, never paged: a failure only this location (or too few) sees.
            self._log.warning(
                "location_failing",
                probe=probe,
                location=location,
                failing_locations=list(failing),
                quorum=need,
                cause=cause,
            )
        return events

    def _announce(self, probe: str, events: list[Event]) -> None:
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


def _name_locations(
    old: IncidentState, new: IncidentState, events: list[Event], failing: tuple[str, ...]
) -> tuple[IncidentState, list[Event]]:
    """Remember which locations see the open incident, and name them in its events.

    A resolution names the locations that saw the failure it ends.
    """
    if new.phase is Phase.OPEN:
        new = replace(new, locations=tuple(sorted({*new.locations, *failing})))
        names = new.locations
    else:
        names = old.locations
    return new, [replace(e, locations=names) for e in events]
