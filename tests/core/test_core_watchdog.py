"""The watchdog: a daemon whose event loop is stuck exits (status 70) instead of running blind."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.app import build_daemon
from monitor.watchdog import EXIT_STUCK, Watchdog
from probes.base import SystemClock
from tests.core.conftest import Captured, config_from


@pytest.mark.parametrize(
    ("ages", "limit", "fired_at"),
    [
        ([None, 1.0, 5.0, 9.0], 10.0, None),
        ([1.0, 11.0, 30.0], 10.0, 1),
        ([None, None, 0.0], 0.5, None),
        ([50.0, 60.0], 10.0, 0),
    ],
    ids=["fresh", "stale-once", "not-started", "fires-once"],
)
def test_watchdog_fires_once_when_the_heartbeat_is_too_old(
    ages: list[float | None], limit: float, fired_at: int | None
) -> None:
    """on_stuck is called at the first check past the limit, and never again."""
    seen: list[float] = []
    feed = iter(ages)
    dog = Watchdog(lambda: next(feed), limit, seen.append)
    results = [dog.check() for _ in ages]
    expected = [i == fired_at for i in range(len(ages))]
    assert results == expected
    assert len(seen) == (0 if fired_at is None else 1)


def test_zero_limit_turns_the_watchdog_off() -> None:
    """limit 0 starts no thread."""
    dog = Watchdog(lambda: 1e9, 0.0, lambda age: None)
    dog.start()
    assert dog._thread is None


def test_stuck_event_loop_makes_the_watchdog_fire(test_kinds: None, captured: Captured) -> None:
    """A probe that blocks the daemon's event loop stops the heartbeat; the watchdog thread notices."""
    config = config_from(
        "environment: test\nprobes:\n  - {name: stuck, kind: t_block, interval: 1s, timeout: 1s,"
        " allow_timeout_over_interval: true, options: {sleep_s: 4}}\n"
    )
    fired = threading.Event()
    ages: list[float] = []

    def on_stuck(age: float) -> None:
        ages.append(age)
        fired.set()

    daemon = build_daemon(
        config,
        registry=CollectorRegistry(),
        clock=SystemClock(),
        logger=captured.logger,
        masker=captured.masker,
        stagger_s=0.0,
        heartbeat_s=0.2,
        grace_s=1.0,
        watchdog_s=1.5,
        on_stuck=on_stuck,
    )
    daemon.watchdog._interval_s = 0.1
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_until_complete, args=(daemon.serve(install_signals=False),))
    runner.start()
    try:
        assert fired.wait(timeout=30), "the watchdog never fired while the loop was blocked"
        assert ages[0] > 1.5
    finally:
        loop.call_soon_threadsafe(daemon.request_stop)
        runner.join(timeout=30)
        loop.close()
    assert not runner.is_alive()


def test_default_reaction_logs_and_exits_70(tmp_path: Path) -> None:
    """Without a hook, a stuck daemon logs daemon.stuck (JSON) and exits with status 70 at once."""
    code = (
        "import sys; from prometheus_client import CollectorRegistry\n"
        "from monitor.app import build_daemon; from monitor.config import parse_config\n"
        "from monitor.logs import make_logger; from probes.base import SystemClock\n"
        "from probes.support.masking import SecretMasker\n"
        "cfg = parse_config('environment: t\\n', env={})\n"
        "d = build_daemon(cfg, registry=CollectorRegistry(), clock=SystemClock(),"
        " logger=make_logger(SecretMasker(), json=True), watchdog_s=60)\n"
        "d._exit_stuck(75.0)\n"
        "sys.exit(0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False
    )
    assert proc.returncode == EXIT_STUCK, proc.stderr[-2000:]
    record = json.loads(proc.stderr.strip().splitlines()[-1])
    assert (record["event"], record["heartbeat_age_s"], record["limit_s"]) == ("daemon.stuck", 75.0, 60)
