"""Latency regression end to end: the real sandbox with ``artifacts-slow``, the shipped
artifact_roundtrip probe through the daemon's own wiring (runner, baselines, history, incidents) on a
real SQLite store seeded with two days of history through the store's own write path.

With the artifact calls delayed to about 3x their baseline p95: a single slow run changes nothing;
three slow runs in a row make the third DEGRADED with cause ``latency_regression`` and open one
incident naming the baseline; the metrics and the status view say so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from prometheus_client import CollectorRegistry

from monitor.alerting.sink import IncidentSink
from monitor.app import build_monitor
from monitor.baselines.service import LatencyBaselines
from monitor.config import Config, parse_config
from monitor.daemon import Daemon
from monitor.diagnosis import LATENCY_REGRESSION
from monitor.history.sink import HistorySink
from monitor.results import ProbeResult
from probes.base import Status, SystemClock
from sandbox.control import FaultControl
from sandbox.core import Sandbox
from tests.baselines.baselines_helpers import history
from tests.history.history_helpers import FullStore

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
PROBE = "artifact_roundtrip"
#: What each step of the seeded history took: production-like, not the sandbox's loopback speed.
SEEDED_STEP_S = 0.3
#: The artifact calls' delay under the fault: about 3x the seeded steps' p95 (the p95 of 0.27-0.33 s
#: interpolated in the 0.25-0.4 s bucket is about 0.39 s).
DELAY_S = 1.3


@dataclass
class Monitor:
    """The production daemon (:func:`monitor.app.build_monitor`), its baselines and sinks, and the
    same store opened beside it for seeding history and reading incidents."""

    daemon: Daemon
    registry: CollectorRegistry
    store: FullStore

    @property
    def baselines(self) -> LatencyBaselines:
        (baselines,) = (t for t in self.daemon.transformers if isinstance(t, LatencyBaselines))
        return baselines

    async def run(self) -> ProbeResult:
        """One run of the probe, published, and every queue written to the store."""
        (result,) = await self.daemon.run_once([PROBE])
        for sink in self.daemon.sinks:
            assert isinstance(sink, HistorySink | IncidentSink)
            assert await sink.flush(30)
        return result

    def regression_metric(self, step: str) -> float | None:
        return self.registry.get_sample_value("synthmon_latency_regression", {"probe": PROBE, "step": step})


def config_for(sandbox: Sandbox, tmp_path: Path) -> Config:
    """The shipped config with only artifact_roundtrip, one bad run opening an incident, log channel."""
    data: dict[str, Any] = yaml.safe_load((REPO / "config.yaml").read_text())
    probe = next(p for p in data["probes"] if p["name"] == PROBE)
    probe.pop("depends_on", None)
    data["probes"] = [probe]
    data.pop("slos", None)  # they name the probes left out
    data["store"] = {"url": f"sqlite:///{tmp_path}/synthmon.db"}
    data["alerting"] = {"rules": {"failure_threshold": 1, "success_threshold": 1, "reminder_interval": 0}}
    data["baselines"] = {"consecutive": 3, "factor": 3.0}
    env = {**sandbox.env(), "SYNTHMON_ENV": "baselines-e2e"}
    return parse_config(yaml.safe_dump(data), source="baselines-e2e.yaml", env=env)


@pytest.fixture
async def monitor(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Monitor]:
    """The daemon as production builds it, on a fresh store (closed after the test)."""
    config = config_for(sandbox, tmp_path)
    registry = CollectorRegistry()
    daemon = build_monitor(
        config, registry=registry, clock=SystemClock(), logger=structlog.get_logger("test")
    )
    store = FullStore.open_existing(config.store.url)
    try:
        yield Monitor(daemon, registry, store)
    finally:
        store.close()
        # What serve() runs on shutdown: flush the queues, close the store and its threads.
        await daemon._run_hooks("shutdown", daemon._shutdown_hooks)


async def test_three_slow_runs_in_a_row_open_one_latency_regression_incident(
    monitor: Monitor, faults: FaultControl
) -> None:
    """Seeded baseline; one slow run: nothing; three in a row: DEGRADED latency_regression, one incident."""
    healthy = await monitor.run()
    assert healthy.status is Status.PASS
    steps = {s.name: SEEDED_STEP_S for s in healthy.steps}
    # Two days of history, one run every 10 minutes, written the way the daemon writes runs.
    now = SystemClock().now()
    monitor.store.append_runs(history(steps, runs=300, until=now, every=timedelta(minutes=10)))
    baselines = monitor.baselines
    assert await baselines.refresh()
    upload = baselines.baselines[(PROBE, "upload")]
    assert 0.3 < upload.seconds < 0.4
    assert monitor.registry.get_sample_value(
        "synthmon_latency_baseline_seconds", {"probe": PROBE, "step": "upload"}
    ) == pytest.approx(upload.seconds)

    faults.set_delays(artifacts_slow_s=DELAY_S)
    faults.set_faults("artifacts-slow")
    single = await monitor.run()
    assert single.status is Status.PASS
    faults.clear_faults()
    assert (await monitor.run()).status is Status.PASS
    alerting = monitor.store.alerting
    assert alerting.incidents(open_only=False, limit=10) == []

    faults.set_delays(artifacts_slow_s=DELAY_S)
    faults.set_faults("artifacts-slow")
    for _ in range(2):
        assert (await monitor.run()).status is Status.PASS
        assert alerting.incidents(open_only=False, limit=10) == []
    third = await monitor.run()
    assert third.status is Status.DEGRADED
    slow = next(s for s in third.steps if s.name == "upload")
    assert slow.status is Status.DEGRADED
    assert slow.diagnosis is not None
    assert slow.diagnosis.cause == LATENCY_REGRESSION
    assert "its 7-day p95 of 0.3" in slow.message
    assert "(3 runs in a row)" in slow.message
    assert monitor.regression_metric("upload") == 1.0

    (incident,) = alerting.incidents(open_only=False, limit=10)
    assert incident.probe == PROBE
    assert incident.resolved_at is None
    state = alerting.incident_states()[PROBE]
    assert state.cause == LATENCY_REGRESSION
    assert state.step == "upload"
    view = {s.step: s for s in baselines.view()[PROBE]}
    assert view["upload"].regressed
    assert view["upload"].message == slow.message

    # Back to normal: the regression ends, the incident resolves, the flag drops.
    faults.clear_faults()
    assert (await monitor.run()).status is Status.PASS
    assert monitor.regression_metric("upload") == 0.0
    (resolved,) = alerting.incidents(open_only=False, limit=10)
    assert resolved.resolved_at is not None
