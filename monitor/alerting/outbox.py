"""The outbox dispatcher: sends queued events, marks them sent only on success, retries with backoff.

Per channel, events go out in the order they were queued (the store only lets the oldest pending row
of a channel be claimed). A transient error reschedules the row with exponential backoff; a
permanent one (bad webhook, bad token, unknown channel) marks it failed at once; a row still failing
after ``give_up_after`` is marked failed as ``expired``. Outcomes are counted in
``synthmon_notifications_total{channel,result}``.

A crash after Slack accepted a message but before it was marked sent re-sends that one message after
the lease expires (at-least-once in that window); every other crash point loses and repeats nothing.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from monitor.alerting.base import Notifier, TransportError
from monitor.alerting.config import OutboxConfig
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.store import IncidentStore
from monitor.store.engine import RunInThread
from monitor.store.metrics import StoreMetrics
from monitor.store.migrate import StoreGate
from probes.base import Clock


def default_owner() -> str:
    """A lease owner name unique per process (host and pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff_s(attempts: int, config: OutboxConfig) -> float:
    """Seconds before attempt ``attempts + 1``: base, 2x base, 4x base ... capped at ``backoff_max``."""
    return float(min(config.backoff_max, config.backoff_base * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """What one dispatch round did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0


class Dispatcher:
    """Drains the outbox through the configured notifiers (see module docstring)."""

    def __init__(
        self,
        store: IncidentStore,
        notifiers: Mapping[str, Notifier],
        clock: Clock,
        metrics: AlertingMetrics,
        store_metrics: StoreMetrics,
        config: OutboxConfig,
        *,
        owner: str | None = None,
        logger: Any = None,
        run: RunInThread | None = None,
        gate: StoreGate | None = None,
    ) -> None:
        self._store = store
        self._run: RunInThread = run or asyncio.to_thread
        self._gate = gate
        self._notifiers = dict(notifiers)
        self._clock = clock
        self._metrics = metrics
        self._store_metrics = store_metrics
        self._config = config
        self.owner = owner or default_owner()
        self._log = logger if logger is not None else structlog.get_logger("synthmon.alerting")
        self._lock = asyncio.Lock()
        self._wakeups: set[asyncio.Task[DispatchReport | None]] = set()

    def dispatch_once(self) -> DispatchReport:
        """Send every due event (up to ``batch``). Blocking: notifiers do network I/O."""
        sent = retried = failed = 0
        for _ in range(self._config.batch):
            item = self._store.claim_next(self._clock.now(), self.owner, self._config.lease)
            if item is None:
                break
            channel = item.channel
            notifier = self._notifiers.get(channel)
            try:
                if notifier is None:
                    raise TransportError(f"channel {channel!r} is not configured", permanent=True)
                thread = self._store.thread_ref(item.event.incident_id, channel)
                ref = notifier.send(item.event, thread)
            except Exception as exc:
                error = exc if isinstance(exc, TransportError) else TransportError(type(exc).__name__)
                if not isinstance(exc, TransportError):
                    self._log.exception("notifier_crashed", channel=channel, outbox_id=item.id)
                now = self._clock.now()
                if error.permanent:
                    self._store.mark_failed(item, now, error.message)
                    self._metrics.notifications.labels(channel=channel, result="permanent_error").inc()
                    self._log.error(
                        "notification_failed_permanently",
                        channel=channel,
                        outbox_id=item.id,
                        error=error.message,
                    )
                    failed += 1
                elif now - item.created_at >= timedelta(seconds=self._config.give_up_after):
                    self._store.mark_failed(item, now, f"expired: {error.message}")
                    self._metrics.notifications.labels(channel=channel, result="expired").inc()
                    self._log.error(
                        "notification_expired", channel=channel, outbox_id=item.id, error=error.message
                    )
                    failed += 1
                else:
                    delay = backoff_s(item.attempts, self._config)
                    self._store.mark_retry(item, now + timedelta(seconds=delay), error.message)
                    self._metrics.notifications.labels(channel=channel, result="transient_error").inc()
                    self._log.warning(
                        "notification_retry",
                        channel=channel,
                        outbox_id=item.id,
                        attempts=item.attempts,
                        retry_in_s=delay,
                        error=error.message,
                    )
                    retried += 1
                continue
            self._store.mark_sent(item, self._clock.now(), ref)
            self._metrics.notifications.labels(channel=channel, result="sent").inc()
            sent += 1
        self._refresh_pending()
        return DispatchReport(sent=sent, retried=retried, failed=failed)

    def _refresh_pending(self) -> None:
        pending = self._store.outbox_pending()
        for channel in set(self._notifiers) | set(pending):
            self._metrics.outbox_pending.labels(channel=channel).set(pending.get(channel, 0))

    def wake(self) -> None:
        """Start a round now (called on the event loop when events were queued), so a new page
        does not wait for the next ``dispatch_interval``. The round shares the lock with the job."""
        task = asyncio.get_running_loop().create_task(self.run())
        self._wakeups.add(task)  # keep a reference until done: the loop holds tasks weakly
        task.add_done_callback(self._wakeups.discard)

    async def run(self) -> DispatchReport | None:
        """One round on a store thread; a store failure is counted and logged, never raised.
        None also when the store is not open yet (``gate``): nothing can be queued before it is."""
        if self._gate is not None and not self._gate.ready:
            return None
        async with self._lock:  # the scheduler and a wake-up must not run two rounds at once
            try:
                report: DispatchReport = await self._run(self.dispatch_once)
                return report
            except Exception as exc:
                self._store_metrics.errors.labels(operation="outbox").inc()
                self._log.warning("outbox_dispatch_failed", error=type(exc).__name__)
                return None

    def job(self) -> tuple[str, float, Callable[[], Awaitable[Any]]]:
        """``(name, interval_s, coroutine function)`` for the scheduler."""
        return ("outbox-dispatch", self._config.dispatch_interval, self.run)
