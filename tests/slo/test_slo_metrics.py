"""The series SLOs need: per-step run counts by status (for step SLOs in Prometheus) and the SLO
gauges, which are absent without data and removed with their SLO."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from monitor.metrics import Metrics
from monitor.slo.config import SloConfig
from monitor.slo.evaluate import evaluate
from monitor.slo.service import SloMetrics
from probes.base import Status
from tests.slo.slo_helpers import T0, run


def test_step_runs_are_counted_by_status_from_zero() -> None:
    """synthmon_step_runs_total counts each step's status; every status exists at 0 from the step's
    first run, so increase() sees the first FAIL."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.record(run("auth", T0, Status.PASS, Status.PASS, Status.PASS))
    metrics.record(run("auth", T0, Status.PASS, Status.FAIL, Status.SKIPPED))

    def value(step: str, status: str) -> float | None:
        return registry.get_sample_value(
            "synthmon_step_runs_total", {"probe": "auth", "step": step, "status": status}
        )

    assert (value("get", "PASS"), value("get", "FAIL"), value("get", "ERROR")) == (1.0, 1.0, 0.0)
    assert (value("cleanup", "PASS"), value("cleanup", "SKIPPED")) == (1.0, 1.0)
    metrics.forget("auth")
    assert value("get", "PASS") is None


def test_slo_gauges_follow_the_statuses() -> None:
    """Objective always; attainment, budget and burn rates only with data; a removed SLO's go away."""
    registry = CollectorRegistry()
    gauges = SloMetrics(registry)
    slo = SloConfig(probe="auth", objective=99.5)
    key = ("auth", None)
    full = {w: {key: (95, 5)} for w in (300.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0, 259200.0, 2592000.0)}
    gauges.update(evaluate([slo], full, T0))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"slo": "auth", **labels})

    assert value("synthmon_slo_objective_ratio") == 0.995
    assert value("synthmon_slo_attainment_ratio") == 0.95
    assert value("synthmon_slo_burn_rate", window="1h") == pytest.approx(10.0)  # 5 % against 0.5 %
    gauges.update(evaluate([slo], {}, T0))
    assert value("synthmon_slo_attainment_ratio") is None
    assert value("synthmon_slo_burn_rate", window="1h") is None
    assert value("synthmon_slo_objective_ratio") == 0.995
    gauges.update([])
    assert value("synthmon_slo_objective_ratio") is None
