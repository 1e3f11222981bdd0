"""The daemon in-process: probing goes on past hangs and broken sinks; HTTP endpoints; reload; jobs."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from monitor.app import build_daemon, build_monitor
from monitor.config import Config
from monitor.daemon import Daemon, PeriodicJob
from monitor.results import ProbeResult
from probes.base import Status, SystemClock
from tests.core.conftest import Captured, config_from
from tests.core.target import Target

BASE = "environment: test\nlisten: 127.0.0.1:0\nsecrets:\n  api_key: ${KEY}\nprobes:\n"
HANG = "  - {name: stuck, kind: t_hang, interval: 1s, timeout: 300ms}\n"
QUICK = "  - {name: quick, kind: t_sleep, interval: 1s, timeout: 100ms, options: {sleep_s: 0}}\n"


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.02)


@dataclass
class RecordingSink:
    """Remembers every result it is given."""

    results: list[ProbeResult] = field(default_factory=list)

    async def handle(self, result: ProbeResult) -> None:
        """Keep the result."""
        self.results.append(result)

    def of(self, probe: str) -> list[ProbeResult]:
        """Results of one probe."""
        return [r for r in self.results if r.probe == probe]


class BrokenSink:
    """Raises on every result (a store that is down)."""

    async def handle(self, result: ProbeResult) -> None:
        """Fail loudly."""
        raise ConnectionError("store unavailable")


@dataclass
class Running:
    """A daemon serving in a task, and its base URL."""

    daemon: Daemon
    task: asyncio.Task[int]
    url: str
    sink: RecordingSink


async def _start(config: Config, captured: Captured, **kwargs: object) -> Running:
    sink = RecordingSink()
    extra_sinks = list(kwargs.pop("sinks", []))  # type: ignore[call-overload]
    daemon = build_daemon(
        config,
        registry=CollectorRegistry(),
        clock=SystemClock(),
        logger=captured.logger,
        masker=captured.masker,
        sinks=[*extra_sinks, sink],
        stagger_s=0.0,
        heartbeat_s=0.2,
        grace_s=2.0,
        **kwargs,  # type: ignore[arg-type]
    )
    task = asyncio.create_task(daemon.serve(install_signals=False))
    await _until(lambda: daemon.server is not None and daemon.server.started)
    assert daemon.server is not None
    return Running(daemon, task, f"http://127.0.0.1:{daemon.server.port}", sink)


@pytest.fixture
async def stopper() -> AsyncIterator[list[Running]]:
    """Stops every daemon a test started, even when the test fails."""
    started: list[Running] = []
    yield started
    for r in started:
        r.daemon.request_stop()
        await asyncio.wait_for(r.task, 10)


def _sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def test_hanging_probe_does_not_stop_other_probes(
    test_kinds: None, captured: Captured, stopper: list[Running]
) -> None:
    """A probe that hangs is cut at each deadline while another probe keeps running on schedule."""
    r = await _start(config_from(BASE + HANG + QUICK), captured)
    stopper.append(r)
    await _until(lambda: len(r.sink.of("stuck")) >= 2 and len(r.sink.of("quick")) >= 3)
    assert all(x.status is Status.ERROR for x in r.sink.of("stuck"))
    assert all(x.status is Status.PASS for x in r.sink.of("quick"))


async def test_failing_sink_is_counted_and_probing_continues(
    test_kinds: None, captured: Captured, stopper: list[Running]
) -> None:
    """A sink that raises is logged and counted; later sinks and later runs still happen."""
    r = await _start(config_from(BASE + QUICK), captured, sinks=[BrokenSink()])
    stopper.append(r)
    await _until(lambda: len(r.sink.of("quick")) >= 3)
    async with httpx.AsyncClient() as client:
        text = (await client.get(r.url + "/metrics")).text
    errors = _sample(text, "synthmon_sink_errors_total", sink="BrokenSink")
    assert errors is not None
    assert errors >= 3
    assert "sink.failed" in captured.text


async def test_http_endpoints(test_kinds: None, captured: Captured, stopper: list[Running]) -> None:
    """/metrics is Prometheus text, /healthz is 200 while alive, /readyz 200 with probe statuses."""
    r = await _start(config_from(BASE + QUICK), captured)
    stopper.append(r)
    await _until(lambda: len(r.sink.of("quick")) >= 1)
    async with httpx.AsyncClient() as client:
        metrics = await client.get(r.url + "/metrics")
        health = await client.get(r.url + "/healthz")
        ready = await client.get(r.url + "/readyz")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert _sample(metrics.text, "synthmon_probe_success", probe="quick") == 1
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert ready.status_code == 200
    assert ready.json()["probes"]["quick"] == "PASS"


async def test_readyz_fails_while_draining(test_kinds: None, captured: Captured) -> None:
    """Once a stop is requested, /readyz answers 503 until the server closes."""
    r = await _start(config_from(BASE + QUICK), captured)
    r.daemon.request_stop()
    ok, _details = r.daemon.ready()
    assert ok is False
    assert await asyncio.wait_for(r.task, 10) == 0


async def test_reload_applies_valid_and_rejects_invalid(
    test_kinds: None, captured: Captured, stopper: list[Running], tmp_path: Path, target: Target
) -> None:
    """A valid config adds its probe and reaches reload hooks; an invalid one is refused and counted."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "config.yaml"
    path.write_text(BASE.replace("${KEY}", "hk_test_" + "r" * 32) + QUICK)
    reloaded: list[list[str]] = []

    def on_reload(config: Config) -> None:
        reloaded.append([p.name for p in config.probes])

    r = await _start(config_from(path.read_text()), captured, config_path=path, reload_hooks=[on_reload])
    stopper.append(r)
    extra = f"  - {{name: web, kind: http, interval: 1s, timeout: 1s, options: {{url: '{target.url}/'}}}}\n"
    path.write_text(BASE.replace("${KEY}", "hk_test_" + "r" * 32) + QUICK + extra)
    assert await r.daemon.reload() is True
    assert reloaded == [["quick", "web"]]
    await _until(lambda: len(r.sink.of("web")) >= 1)
    path.write_text(BASE.replace("${KEY}", "x" * 8) + "  - {name: broken, kind: nope}\n")
    assert await r.daemon.reload() is False
    assert [p.name for p in r.daemon.config.probes] == ["quick", "web"]
    assert len(reloaded) == 1
    async with httpx.AsyncClient() as client:
        text = (await client.get(r.url + "/metrics")).text
    assert _sample(text, "synthmon_config_reloads_total", result="success") == 1
    assert _sample(text, "synthmon_config_reloads_total", result="failure") == 1
    assert "config.reload_failed" in captured.text
    assert "unknown probe kind 'nope'" in captured.text


async def test_reload_says_which_fields_need_a_restart(
    test_kinds: None, captured: Captured, stopper: list[Running], tmp_path: Path
) -> None:
    """A reload applies what it can and names the fields it cannot (listen, web, store, location)."""
    path = tmp_path / "config.yaml"
    base = BASE.replace("${KEY}", "hk_test_" + "r" * 32)
    path.write_text(base + QUICK)
    r = await _start(config_from(path.read_text()), captured, config_path=path)
    stopper.append(r)
    assert await r.daemon.reload() is True
    assert "config.restart_needed" not in captured.text
    moved = base.replace("environment: test\n", "environment: test\nlocation: eu-west-1b\n")
    path.write_text(moved + QUICK)
    assert await r.daemon.reload() is True
    line = next(line for line in captured.text.splitlines() if "config.restart_needed" in line)
    assert "location" in line
    assert "listen" not in line
    assert r.daemon.config.location == "eu-west-1b"  # the config in force; the daemon's location stays


async def test_periodic_jobs_run_and_their_errors_are_counted(
    test_kinds: None, captured: Captured, stopper: list[Running]
) -> None:
    """Jobs passed to build_daemon run on the scheduler; one that raises is counted, not fatal."""
    calls: list[str] = []

    async def ok() -> None:
        calls.append("ok")

    async def bad() -> None:
        calls.append("bad")
        raise RuntimeError("prune failed")

    # A plain (name, interval_s, func) tuple is accepted like a PeriodicJob.
    jobs = [PeriodicJob("ok", 0.2, ok), ("bad", 0.2, bad)]
    r = await _start(config_from(BASE + QUICK), captured, jobs=jobs)
    stopper.append(r)
    await _until(lambda: calls.count("ok") >= 2 and calls.count("bad") >= 2)
    job_errors = _sample(
        (await httpx.AsyncClient().get(r.url + "/metrics")).text, "synthmon_job_errors_total", task="bad"
    )
    assert job_errors is not None
    assert job_errors >= 2


async def test_shutdown_hooks_run_after_the_drain(test_kinds: None, captured: Captured) -> None:
    """Every shutdown hook runs once after in-flight runs finished, even when an earlier one fails."""
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise OSError("store already closed")

    async def flush() -> None:
        calls.append(f"flush after {len(r.sink.of('quick'))} results")

    r = await _start(config_from(BASE + QUICK), captured, shutdown_hooks=[broken, flush])
    await _until(lambda: len(r.sink.of("quick")) >= 1)
    r.daemon.request_stop()
    assert await asyncio.wait_for(r.task, 10) == 0
    assert calls[0] == "broken"
    assert calls[1].startswith("flush after")
    assert len(calls) == 2
    assert "daemon.shutdown_hook_failed" in captured.text


async def test_full_monitor_declares_series_and_reports_the_store(
    test_kinds: None, captured: Captured, tmp_path: Path
) -> None:
    """build_monitor: /readyz shows the store, counters exist at 0 and the interval gauge is set."""
    config = config_from(
        BASE.replace("probes:\n", f"store:\n  url: sqlite:///{tmp_path}/s.db\nprobes:\n") + QUICK
    )
    daemon = build_monitor(
        config, registry=CollectorRegistry(), clock=SystemClock(), logger=captured.logger, grace_s=2.0
    )
    task = asyncio.create_task(daemon.serve(install_signals=False))
    try:
        await _until(lambda: daemon.server is not None and daemon.server.started)
        assert daemon.server is not None
        url = f"http://127.0.0.1:{daemon.server.port}"
        async with httpx.AsyncClient() as client:
            ready = (await client.get(url + "/readyz")).json()
            text = (await client.get(url + "/metrics")).text
        assert ready["store"]["ready"] is True
        assert _sample(text, "synthmon_probe_interval_seconds", probe="quick") == 1.0
        assert _sample(text, "synthmon_notifications_total", channel="log", result="permanent_error") == 0.0
        assert _sample(text, "synthmon_sink_errors_total", sink="HistorySink") == 0.0
        # The whole daemon's exposition (core, store and alerting series together) passes promtool.
        promtool = shutil.which("promtool")
        if promtool is not None:
            proc = await asyncio.to_thread(
                subprocess.run,
                [promtool, "check", "metrics"],
                input=text.encode(),
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert (proc.returncode, proc.stdout + proc.stderr) == (0, b"")
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
