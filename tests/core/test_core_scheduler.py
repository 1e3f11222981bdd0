"""The scheduler: no self-overlap (missed runs counted), staggered starts, drain, heartbeat."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable

import pytest

from monitor.config import ProbeConfig
from monitor.scheduler import ProbeScheduler
from probes.base import SystemClock
from tests.core import kinds
from tests.core.conftest import Captured


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.02)


def _sleep_probe(name: str, interval: float, sleep_s: float, **extra: object) -> ProbeConfig:
    probe = ProbeConfig.model_validate(
        {
            "name": name,
            "kind": "t_sleep",
            "interval": max(interval, 1.0),
            "timeout": max(sleep_s * 2, 0.1),
            "allow_timeout_over_interval": True,
            "options": {"sleep_s": sleep_s},
            **extra,
        }
    )
    # Config refuses intervals under 1s; the scheduler itself is timescale-free, so its tests
    # shrink the interval after validation to keep the suite fast.
    return probe.model_copy(update={"interval": interval})


class Harness:
    """A scheduler whose runs call SleepProbe-like coroutines directly, with counters."""

    def __init__(self, captured: Captured, probes: list[ProbeConfig], stagger_s: float = 0.0) -> None:
        self.missed: list[str] = []
        self.sleeps = {p.name: p.options.sleep_s for p in probes}  # type: ignore[attr-defined]
        self.probes = {p.name: kinds.SleepProbe(p.name, p.options) for p in probes}  # type: ignore[arg-type]
        self.scheduler = ProbeScheduler(
            run_probe=self.run,
            clock=SystemClock(),
            logger=captured.logger,
            on_missed=self.missed.append,
            stagger_s=stagger_s,
            heartbeat_s=0.2,
        )

    async def run(self, name: str) -> None:
        """Run the probe's body (the runner is not under test here)."""
        await self.probes[name].run(None)  # type: ignore[arg-type]


async def test_slow_probe_never_overlaps_itself(test_kinds: None, captured: Captured) -> None:
    """A run longer than the interval blocks the next ones; they are counted as missed, not stacked."""
    h = Harness(captured, [_sleep_probe("slow", interval=0.2, sleep_s=0.7)])
    h.scheduler.start([_sleep_probe("slow", interval=0.2, sleep_s=0.7)])
    try:
        await _until(lambda: len(kinds.SleepProbe.starts.get("slow", [])) >= 2 and len(h.missed) >= 2)
    finally:
        await h.scheduler.drain(5.0)
    assert kinds.SleepProbe.max_active["slow"] == 1
    assert set(h.missed) == {"slow"}


async def test_first_runs_are_staggered(test_kinds: None, captured: Captured) -> None:
    """Probes sharing an interval start spread across the stagger window, not in the same instant."""
    probes = [_sleep_probe(f"p{i}", interval=30, sleep_s=0) for i in range(4)]
    h = Harness(captured, probes, stagger_s=1.2)
    h.scheduler.start(probes)
    try:
        await _until(lambda: len(kinds.SleepProbe.starts) == 4)
    finally:
        await h.scheduler.drain(5.0)
    firsts = sorted(starts[0] for starts in kinds.SleepProbe.starts.values())
    gaps = [b - a for a, b in itertools.pairwise(firsts)]
    assert firsts[-1] - firsts[0] >= 0.7
    assert min(gaps) >= 0.15


async def test_drain_lets_in_flight_runs_finish(test_kinds: None, captured: Captured) -> None:
    """Draining stops new runs and waits for the running one within the grace period."""
    probe = _sleep_probe("p", interval=30, sleep_s=0.5)
    h = Harness(captured, [probe])
    h.scheduler.start([probe])
    await _until(lambda: h.scheduler.in_flight == 1)
    assert await h.scheduler.drain(5.0) is True
    assert kinds.SleepProbe.active["p"] == 0
    assert h.scheduler.in_flight == 0
    assert not h.scheduler.running


async def test_drain_cancels_runs_beyond_the_grace(test_kinds: None, captured: Captured) -> None:
    """A run still going when the grace period ends is cancelled and drain reports it."""
    probe = _sleep_probe("p", interval=30, sleep_s=60)
    h = Harness(captured, [probe])
    h.scheduler.start([probe])
    await _until(lambda: h.scheduler.in_flight == 1)
    start = time.monotonic()
    assert await h.scheduler.drain(0.3) is False
    assert time.monotonic() - start < 2.0
    assert h.scheduler.in_flight == 0
    assert "scheduler.drain_timeout" in captured.text


async def test_heartbeat_marks_the_scheduler_alive(test_kinds: None, captured: Captured) -> None:
    """alive() follows the heartbeat job; a drained scheduler is not alive."""
    h = Harness(captured, [])
    h.scheduler.start([])
    first = h.scheduler.last_tick
    await _until(lambda: h.scheduler.last_tick != first)
    assert h.scheduler.alive()
    await h.scheduler.drain(1.0)
    assert not h.scheduler.alive()


async def test_update_adds_removes_and_keeps_jobs(test_kinds: None, captured: Captured) -> None:
    """A reload adds new probes, drops removed or disabled ones, and keeps unchanged ones."""
    a, b = _sleep_probe("a", 30, 0), _sleep_probe("b", 30, 0)
    h = Harness(captured, [a, b])
    h.scheduler.start([a, b])
    try:
        c = _sleep_probe("c", 30, 0)
        b_off = _sleep_probe("b", 30, 0, enabled=False)
        h.probes["c"] = kinds.SleepProbe("c", c.options)  # type: ignore[arg-type]
        h.scheduler.update([a, b_off, c])
        assert h.scheduler.scheduled() == ["a", "c"]
        await _until(lambda: "c" in kinds.SleepProbe.starts)
    finally:
        await h.scheduler.drain(1.0)


async def test_missed_runs_are_counted_each_but_logged_once_a_minute(
    test_kinds: None, captured: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    """An overloaded probe misses run after run: the counter hears of each, the log says it once
    (with the reason), and APScheduler's own line for each missed run is left out."""
    probe = _sleep_probe("slow", interval=0.02, sleep_s=0.7)
    h = Harness(captured, [probe])
    caplog.set_level(logging.WARNING)
    h.scheduler.start([probe])
    try:
        await _until(lambda: len(h.missed) >= 5)
    finally:
        await h.scheduler.drain(5.0)
    lines = [json.loads(line) for line in captured.text.splitlines()]
    missed = [line for line in lines if line["event"] == "scheduler.missed_run"]
    assert len(missed) == 1
    assert missed[0]["probe"] == "slow"
    assert missed[0]["reason"] == "previous run still going"
    assert not [r for r in caplog.records if r.name.startswith("apscheduler") and "skipped" in r.getMessage()]


async def test_a_periodic_job_failing_on_a_known_error_logs_one_line(captured: Captured) -> None:
    """A housekeeping job failing on an error the daemon understands (the store being down) logs
    one warning naming it; any other failure keeps its traceback. Both are counted."""
    failed: list[str] = []
    scheduler = ProbeScheduler(
        run_probe=lambda name: asyncio.sleep(0),
        clock=SystemClock(),
        logger=captured.logger,
        on_missed=lambda name: None,
        on_job_error=failed.append,
        known_error=lambda exc: isinstance(exc, ConnectionError),
        heartbeat_s=0.2,
    )

    async def store_down() -> None:
        raise ConnectionError("database unreachable")

    async def bug() -> None:
        raise ValueError("a bug")

    scheduler.start([])
    try:
        scheduler.add_periodic("store-job", 1.0, store_down)
        scheduler.add_periodic("buggy-job", 1.0, bug)
        await _until(lambda: {"store-job", "buggy-job"} <= set(failed))
    finally:
        await scheduler.drain(1.0)
    lines = [json.loads(line) for line in captured.text.splitlines()]
    by_job = {line["job"]: line for line in lines if line["event"] == "scheduler.job_failed"}
    assert by_job["store-job"]["level"] == "warning"
    assert by_job["store-job"]["error"] == "ConnectionError"
    assert "exception" not in by_job["store-job"]
    assert by_job["buggy-job"]["level"] == "error"
    assert "ValueError: a bug" in by_job["buggy-job"]["exception"]
