"""When probes run: APScheduler 3.x AsyncIOScheduler, one interval job per probe.

- ``max_instances=1`` + ``coalesce=True``: a probe never overlaps itself; a run that cannot start
  because the previous one is still going is counted as missed (EVENT_JOB_MAX_INSTANCES), as is a
  run later than its misfire grace (EVENT_JOB_MISSED).
- Start-up: every enabled probe runs once right away, staggered across ``stagger_s`` seconds so
  the platform does not see a burst; afterwards interval + random jitter.
- A heartbeat job stamps :attr:`last_tick`; ``/healthz`` reports the scheduler dead when it stops.
- :meth:`drain` (SIGTERM): stop starting runs, let in-flight ones finish up to a grace period,
  cancel what is left. APScheduler's own ``shutdown`` would cancel in-flight coroutines at once,
  so the scheduler tracks its running tasks itself.
- Missed runs are logged at most once a minute per probe (:class:`monitor.logs.Throttle`; the
  metric counts each one), and APScheduler's own line for each is left out: an overloaded
  scheduler misses runs fastest exactly when it has no CPU to spare for writing about them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.config import ProbeConfig
from monitor.logs import Throttle
from probes.base import Clock

PROBE_PREFIX = "probe:"
JOB_PREFIX = "job:"
HEARTBEAT_ID = "heartbeat"

#: APScheduler's per-run warnings that :meth:`ProbeScheduler._missed` reports instead (throttled).
_APSCHEDULER_MISSED = (
    ("apscheduler.executors.default", "Run time of job "),
    ("apscheduler.scheduler", "Execution of job "),
)


class _LeaveOutMissed(logging.Filter):
    """Drops APScheduler's "missed by" / "skipped: maximum number of running instances" records."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and str(record.msg).startswith(self._prefix))


class ProbeScheduler:
    """Schedules probe runs and periodic jobs on the running event loop."""

    def __init__(
        self,
        *,
        run_probe: Callable[[str], Awaitable[object]],
        clock: Clock,
        logger: Any,
        on_missed: Callable[[str], None],
        on_job_error: Callable[[str], None] | None = None,
        known_error: Callable[[BaseException], bool] | None = None,
        stagger_s: float = 5.0,
        heartbeat_s: float = 5.0,
    ) -> None:
        self._run_probe = run_probe
        self._clock = clock
        self._log = logger
        self._on_missed = on_missed
        self._on_job_error = on_job_error
        self._known_error = known_error
        self._missed_lines = Throttle(60.0, monotonic=clock.monotonic)
        self.stagger_s = stagger_s
        self.heartbeat_s = heartbeat_s
        self._scheduler: AsyncIOScheduler | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._shape: dict[str, tuple[float, float]] = {}  # probe -> (interval, jitter) as scheduled
        self.last_tick: float | None = None
        self.draining = False

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, probes: Sequence[ProbeConfig]) -> None:
        """Start the scheduler (inside the running loop) with every enabled probe."""
        scheduler = AsyncIOScheduler(timezone=UTC)
        for name, prefix in _APSCHEDULER_MISSED:
            target = logging.getLogger(name)
            if not any(isinstance(f, _LeaveOutMissed) for f in target.filters):
                target.addFilter(_LeaveOutMissed(prefix))
        scheduler.add_listener(self._missed, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self._scheduler = scheduler
        scheduler.add_job(
            self._heartbeat,
            "interval",
            seconds=self.heartbeat_s,
            id=HEARTBEAT_ID,
            max_instances=1,
            coalesce=True,
            next_run_time=self._clock.now(),
        )
        self._add_probes([p for p in probes if p.enabled])
        scheduler.start()
        self.last_tick = self._clock.monotonic()

    def add_periodic(self, name: str, interval_s: float, func: Callable[[], Awaitable[None]]) -> None:
        """Run ``func`` every ``interval_s`` (housekeeping: pruning, outbox dispatch, ...)."""
        assert self._scheduler is not None, "start() first"
        self._scheduler.add_job(
            self._periodic,
            "interval",
            args=[name, func],
            seconds=interval_s,
            id=JOB_PREFIX + name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(interval_s)),
            replace_existing=True,
        )

    def update(self, probes: Sequence[ProbeConfig]) -> None:
        """Apply a reloaded config: add, remove or reschedule jobs; unchanged probes keep their timing."""
        assert self._scheduler is not None, "start() first"
        wanted = {p.name: p for p in probes if p.enabled}
        for name in list(self._shape):
            probe = wanted.get(name)
            if probe is None or (probe.interval, probe.jitter) != self._shape[name]:
                self._scheduler.remove_job(PROBE_PREFIX + name)
                del self._shape[name]
        self._add_probes([p for p in wanted.values() if p.name not in self._shape])

    async def drain(self, grace_s: float) -> bool:
        """Stop starting runs; wait up to ``grace_s`` for in-flight ones. True when all finished."""
        self.draining = True
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.pause()
        pending = {t for t in self._inflight if not t.done()}
        drained = True
        if pending:
            self._log.info("scheduler.draining", in_flight=len(pending), grace_s=grace_s)
            _done, still = await asyncio.wait(pending, timeout=grace_s)
            if still:
                drained = False
                self._log.warning("scheduler.drain_timeout", cancelled=len(still))
                for task in still:
                    task.cancel()
                await asyncio.gather(*still, return_exceptions=True)
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        return drained

    # --- state -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the scheduler is started and not drained."""
        return self._scheduler is not None and self._scheduler.running and not self.draining

    def alive(self) -> bool:
        """True when the heartbeat job ran recently (the scheduler is firing jobs)."""
        if not self.running or self.last_tick is None:
            return False
        return self._clock.monotonic() - self.last_tick < 3 * self.heartbeat_s + 1.0

    @property
    def in_flight(self) -> int:
        """Runs currently executing."""
        return sum(1 for t in self._inflight if not t.done())

    def scheduled(self) -> list[str]:
        """Names of the probes that have a job."""
        return sorted(self._shape)

    # --- jobs --------------------------------------------------------------------------------

    def _add_probes(self, probes: Sequence[ProbeConfig]) -> None:
        assert self._scheduler is not None
        now = self._clock.now()
        count = len(probes)
        for i, probe in enumerate(probes):
            # Spread first runs evenly over the stagger window (never beyond the probe's interval).
            offset = min(self.stagger_s, probe.interval) * i / count if count > 1 else 0.0
            self._scheduler.add_job(
                self._probe_job,
                "interval",
                args=[probe.name],
                seconds=probe.interval,
                jitter=probe.jitter or None,
                id=PROBE_PREFIX + probe.name,
                max_instances=1,
                coalesce=True,
                # A run later than one interval is skipped (and counted) rather than bunched up.
                misfire_grace_time=max(1, int(probe.interval)),
                next_run_time=now + timedelta(seconds=offset),
                replace_existing=True,
            )
            self._shape[probe.name] = (probe.interval, probe.jitter)

    async def _probe_job(self, name: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._run_probe(name)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The runner turns probe failures into results; reaching here is a bug in a sink or the
            # runner itself. Log it and keep scheduling.
            self._log.exception("scheduler.run_failed", probe=name)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _periodic(self, name: str, func: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await func()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._known_error is not None and self._known_error(exc):
                # Understood and reported where it happens (the store being down): one line.
                self._log.warning("scheduler.job_failed", job=name, error=type(exc).__name__)
            else:
                self._log.exception("scheduler.job_failed", job=name)
            if self._on_job_error is not None:
                self._on_job_error(name)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _heartbeat(self) -> None:
        self.last_tick = self._clock.monotonic()

    def _missed(self, event: JobEvent) -> None:
        job_id = str(event.job_id)
        if job_id.startswith(PROBE_PREFIX):
            name = job_id.removeprefix(PROBE_PREFIX)
            self._on_missed(name)
            suppressed = self._missed_lines.allow(name)
            if suppressed is not None:
                extra = {"suppressed": suppressed} if suppressed else {}
                why = "previous run still going" if event.code == EVENT_JOB_MAX_INSTANCES else "too late"
                self._log.warning("scheduler.missed_run", probe=name, reason=why, **extra)
