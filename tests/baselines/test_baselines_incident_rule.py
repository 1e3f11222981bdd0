"""A latency regression pages through the normal incident rules: a DEGRADED run whose cause is
``latency_regression`` counts as bad (unless the rule turns that off); other DEGRADED runs stay good."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from monitor.alerting.config import AlertingConfig, IncidentRule
from monitor.alerting.incidents import IncidentState, Phase, Verdict, transition, verdict
from monitor.baselines.config import BaselinesConfig
from monitor.baselines.judge import Baseline, Key, judge
from monitor.results import ProbeResult
from probes.base import Status
from tests.baselines.baselines_helpers import T0, run

PROBE = "artifact_roundtrip"
BASELINES: dict[Key, Baseline] = {(PROBE, "upload"): Baseline(PROBE, "upload", 0.2, 500, T0, "7-day p95")}


def regressed() -> ProbeResult:
    """A run the judge made DEGRADED for a latency regression (its third slow run in a row)."""
    result = judge(run({"upload": 0.9}), BASELINES, {(PROBE, "upload"): 2}, BaselinesConfig()).result
    assert result.status is Status.DEGRADED
    return result


def budget_degraded() -> ProbeResult:
    """A run DEGRADED by a latency budget (no latency_regression cause)."""
    return replace(run({"upload": 0.9}), status=Status.DEGRADED)


@pytest.mark.parametrize(
    ("make", "rule", "expected"),
    [
        (regressed, IncidentRule(), Verdict.BAD),
        (regressed, IncidentRule(alert_on_latency_regression=False), Verdict.GOOD),
        (budget_degraded, IncidentRule(), Verdict.GOOD),
        (budget_degraded, IncidentRule(alert_on_degraded=True), Verdict.BAD),
    ],
    ids=["regression-bad", "regression-off", "budget-good", "budget-alert-on-degraded"],
)
def test_only_a_latency_regression_makes_degraded_bad_by_default(
    make: object, rule: IncidentRule, expected: Verdict
) -> None:
    """DEGRADED is good by default; a latency regression is bad unless alert_on_latency_regression is off."""
    assert callable(make)
    assert verdict(make(), rule) is expected


def test_per_probe_override_turns_latency_regression_pages_off() -> None:
    """alerting.probes.<name>.alert_on_latency_regression overrides the default rule."""
    config = AlertingConfig.model_validate({"probes": {PROBE: {"alert_on_latency_regression": False}}})
    assert config.rule_for(PROBE).alert_on_latency_regression is False
    assert config.rule_for("auth").alert_on_latency_regression is True


def test_a_regression_opens_an_incident_that_names_the_cause_and_the_baseline() -> None:
    """Through the state machine: the opening event carries the cause, its title and the message."""
    rule = IncidentRule(failure_threshold=1)
    state, events = transition(IncidentState(probe=PROBE), regressed(), rule, T0 + timedelta(minutes=1))
    assert state.phase is Phase.OPEN
    (opened,) = events
    assert opened.cause == "latency_regression"
    assert opened.title == "Latency regression"
    assert opened.step == "upload"
    assert opened.message == "upload took 0.90 s, 4.5\u00d7 its 7-day p95 of 0.20 s (3 runs in a row)"
