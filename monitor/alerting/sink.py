"""The incident sink: feeds each result to correlation and the state machine inside the store's
transition transaction (see :mod:`monitor.alerting.correlation`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog

from monitor.alerting.base import Event
from monitor.alerting.config import AlertingConfig
from monitor.alerting.correlation import conclude, correlate
from monitor.alerting.incidents import IncidentState, Phase, Verdict, failing_step, transition, verdict
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.quorum import HEARTBEAT_S, LocationView, failing_locations, gate, observe, required
from monitor.alerting.silences import silenced_by
from monitor.alerting.store import Here, IncidentStore, IncidentView, Step
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
        """Evaluate ``batch`` in arrival order: the results that could change a state in one store
        transaction (:meth:`~monitor.alerting.store.IncidentStore.transitions`), the rest skipped.

        Nothing takes effect before the transaction commits, so an outage puts the whole batch back
        for later. Any other failure is retried one result at a time, to drop only the one at fault.
        """
        plan: list[_Pending | None] = []
        touched: set[str] = set()
        for result, now in batch:
            # After a probe's first transaction in the batch its state is no longer the known one.
            if result.probe not in touched and self._nothing_to_decide(result):
                plan.append(None)
                continue
            touched.add(result.probe)
            plan.append(self._prepare(result, now))
        pending = [noted for noted in plan if noted is not None]
        try:
            outcomes = (
                await self._run(self._store.transitions, [noted.step for noted in pending], self._channels)
                if pending
                else []
            )
        except Exception as exc:
            if not is_outage(exc):
                return await self._one_by_one(batch)
            self._store_metrics.errors.labels(operation="incident_transition").inc()
            self._log.warning(
                "incident_transition_failed",
                probe=pending[0].result.probe,
                error=type(exc).__name__,
                waiting=self._queue.depth,
            )
            return 0
        done = iter(outcomes)
        for noted in plan:
            if noted is None:
                self._metrics.transitions_skipped.inc()
            else:
                self._finish(noted, next(done))
        return len(batch)

    async def _one_by_one(self, batch: list[tuple[ProbeResult, datetime]]) -> int:
        """:meth:`_evaluate` a transaction per result: a result the store rejects for another reason
        than an outage (a bug, bad data) is counted, logged and skipped, so it cannot block the queue."""
        for i, (result, now) in enumerate(batch):
            if self._nothing_to_decide(result):
                self._metrics.transitions_skipped.inc()
                continue
            noted = self._prepare(result, now)
            try:
                [events] = await self._run(self._store.transitions, [noted.step], self._channels)
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
            self._finish(noted, events)
        return len(batch)

    def _nothing_to_decide(self, result: ProbeResult) -> bool:
        """True when the state machine could not change this probe's state in any way that matters:
        a good run of a probe known (recently, from this process's own last transition) to be fine.

        The transaction is then skipped: on a healthy platform that is nearly every run. The state
        read back is at most :data:`KNOWN_STATE_MAX_AGE_S` old, so an incident opened by another
        replica is still seen and resolved by this one's good runs within that time.
        """
        judged = verdict(result, self._config.rule_for(result.probe))
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

    def _prepare(self, result: ProbeResult, now: datetime) -> _Pending:
        """The store step of ``result``: its ``decide`` (correlation, quorum, silences, the state
        machine) and what it notes for :meth:`_finish`."""
        probe = result.probe
        config = self._config
        rule = config.rule_for(probe)
        deps = self._deps
        step = failing_step(result)
        cause = step.diagnosis.cause if step is not None and step.diagnosis else None
        judged = verdict(result, rule)
        location = self.location
        window = max(config.quorum.window, self._spacing.get(probe, 0.0))
        noted = _Pending(result, cause)

        def decide(view: IncidentView) -> tuple[IncidentState, list[Event]]:
            failing = failing_locations(view.views.values(), now, window)
            # Live locations that probe this probe at all (a probe may run in some locations only).
            need = required(config.quorum.min_locations, len(view.live & view.views.keys()))
            counted = gate(judged, failing, need)
            mine = view.views.get(location)
            if mine is not None:
                noted.seen.append(mine)
                if mine.failures == 1 and counted is not judged:
                    # Once per streak: the metric and the views show it for as long as it lasts.
                    noted.quorum_wait.append((failing, need))
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
            noted.decided.append(new)
            return new, conclude(events, new, view.state, view.others, view.records, deps)

        here = Here(location, lambda old: observe(old or LocationView(probe, location), result, judged, now))
        noted.step = Step(probe, now, decide, here)
        return noted

    def _finish(self, noted: _Pending, events: list[Event]) -> None:
        """What a committed transition tells this process: the probe's known state and this
        location's view of it, the quorum's wait, and its events."""
        probe, location = noted.result.probe, self.location
        if noted.decided:
            self._known[probe] = (noted.decided[-1], self._clock.monotonic())
        if noted.seen:
            view = self._views[probe] = noted.seen[-1]
            self._metrics.location_failing.labels(probe=probe, location=location).set(int(view.failing))
        if noted.quorum_wait:
            failing, need = noted.quorum_wait[-1]
            # Visible, never paged: a failure only this location (or too few) sees.
            self._log.warning(
                "location_failing",
                probe=probe,
                location=location,
                failing_locations=list(failing),
                quorum=need,
                cause=noted.cause,
            )
        self._announce(probe, events)

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


@dataclass(eq=False)
class _Pending:
    """One result on its way through a transition: what its ``decide`` noted, for ``_finish``."""

    result: ProbeResult
    cause: str | None
    step: Step = field(init=False)
    decided: list[IncidentState] = field(default_factory=list)
    seen: list[LocationView] = field(default_factory=list)
    quorum_wait: list[tuple[tuple[str, ...], int]] = field(default_factory=list)


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
