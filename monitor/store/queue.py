"""The write queue that keeps every store writer off the probe path.

Why a queue: ``Daemon.publish`` awaits each sink inside the probe job. A sink that awaited the
database (locked, hung, half-open connection) would hold every probe job with it, and probing, the
whole point of the daemon, would stop. So a sink only appends to a bounded in-memory
:class:`WriteQueue` and returns; one background task per queue drains it in order through the
store's own threads. While the database is down the queue grows (oldest dropped, and counted, when
full) and draining backs off; when it is back, everything is written in the order it arrived.
Drops are logged at most once a minute (:class:`monitor.logs.Throttle`), each line with every drop
since the previous one; ``on_dropped`` is told of each.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import structlog

from monitor.logs import Throttle
from monitor.store.migrate import StoreGate

T = TypeVar("T")


class WriteQueue(Generic[T]):
    """A bounded FIFO drained in order by one background task (see the module docstring).

    ``process(batch)`` writes a batch and returns how many items from its front are done (stored,
    or given up on as bad data); fewer than the whole batch means "the store is unavailable": the
    rest goes back to the front and draining backs off (``backoff_base`` doubling up to
    ``backoff_max`` seconds, on ``monotonic``). ``gate`` (optional) must be open before any write.
    ``put`` never blocks and never raises; it needs a running event loop to start the drain task.

    ``linger_s`` > 0 lets items gather for that long before a drain starts (unless a whole batch is
    waiting), so a busy daemon writes one transaction per batch instead of one per result: the
    store's cost is per transaction far more than per row.
    """

    def __init__(
        self,
        name: str,
        process: Callable[[list[T]], Awaitable[int]],
        *,
        capacity: int,
        batch: int = 500,
        monotonic: Callable[[], float] = time.monotonic,
        gate: StoreGate | None = None,
        on_depth: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        linger_s: float = 0.0,
        logger: Any = None,
    ) -> None:
        self.name = name
        self._process = process
        self._capacity = capacity
        self._batch = batch
        self._monotonic = monotonic
        self._gate = gate
        self._on_depth = on_depth
        self._on_dropped = on_dropped
        self._base = backoff_base
        self._max = backoff_max
        self._log = logger if logger is not None else structlog.get_logger("synthmon.store")
        self._items: deque[T] = deque()
        self._inflight = 0
        self._failures = 0
        self._retry_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._linger_s = linger_s
        self._linger: asyncio.TimerHandle | None = None
        self._drop_lines = Throttle(60.0, monotonic=monotonic)

    @property
    def depth(self) -> int:
        """Items not yet written, including a batch being written right now."""
        return len(self._items) + self._inflight

    def put(self, item: T) -> None:
        """Queue ``item`` (dropping the oldest when full) and start draining unless backing off."""
        self._items.append(item)
        self._trim()
        self._report_depth()
        if self._linger_s > 0 and len(self._items) < self._batch:
            if self._linger is None and (self._task is None or self._task.done()):
                self._linger = asyncio.get_running_loop().call_later(self._linger_s, self._lingered)
            return
        self.kick()

    def _lingered(self) -> None:
        self._linger = None
        self.kick()

    def _trim(self) -> None:
        overflow = len(self._items) + self._inflight - self._capacity
        dropped = 0
        while overflow > dropped and self._items:
            self._items.popleft()  # the oldest item is the least useful one to keep
            dropped += 1
        if dropped:
            if self._on_dropped is not None:
                self._on_dropped(dropped)
            earlier = self._drop_lines.allow(self.name, dropped)
            if earlier is not None:
                self._log.warning(
                    f"{self.name}_buffer_overflow", dropped=dropped + earlier, capacity=self._capacity
                )

    def _report_depth(self) -> None:
        if self._on_depth is not None:
            self._on_depth(self.depth)

    def kick(self, *, force: bool = False) -> asyncio.Task[None] | None:
        """Start the drain task if there is work and no task yet; ``force`` ignores the backoff.
        Returns the drain task (running or new), or None when there is nothing to do now."""
        if self._task is not None and not self._task.done():
            return self._task
        if not self._items:
            return None
        if not force and self._monotonic() < self._retry_at:
            return None
        self._task = asyncio.get_running_loop().create_task(self._drain(force=force))
        return self._task

    async def _drain(self, *, force: bool) -> None:
        while self._items:
            if self._gate is not None and not await self._gate.ensure(force=force):
                return  # the gate backs off by itself; the next kick asks again
            batch = [self._items.popleft() for _ in range(min(self._batch, len(self._items)))]
            self._inflight = len(batch)
            try:
                done = await self._process(batch)
            except Exception:  # a bug in process must not lose the batch or kill the queue silently
                self._log.exception(f"{self.name}_write_crashed", size=len(batch))
                done = 0
            finally:
                self._inflight = 0
            if done < len(batch):
                self._items.extendleft(reversed(batch[done:]))
                self._trim()
                self._failures += 1
                delay = min(self._max, self._base * 2 ** min(self._failures - 1, 30))
                self._retry_at = self._monotonic() + delay
                self._report_depth()
                return
            self._failures = 0
            self._retry_at = 0.0
            self._report_depth()

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Drain now (ignoring the backoff) and wait up to ``timeout_s`` (None: no limit).

        True when the queue is empty afterwards. On timeout the drain task keeps running (a
        store call cannot be interrupted from here) and False is returned.
        """
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        task = self.kick(force=True)
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
            if not done:
                return False
        return not self.depth

    def job(self, name: str, interval_s: float) -> tuple[str, float, Callable[[], Awaitable[Any]]]:
        """A periodic kick for the scheduler: retries after an outage even when no new item comes."""

        async def _kick() -> None:
            self.kick()

        return (name, interval_s, _kick)
