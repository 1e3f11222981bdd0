"""The latency verdict (pure): slow runs in a row, the floor, what gets DEGRADED and what it says."""

from __future__ import annotations

from datetime import timedelta

import pytest

from monitor.baselines.config import BaselinesConfig
from monitor.baselines.judge import Baseline, Key, baseline_name, baselines_from, is_slow, judge
from monitor.diagnosis import LATENCY_REGRESSION
from monitor.history.base import LatencyHistogram
from monitor.store.latency import LATENCY_BUCKETS, bucket_index
from probes.base import Status
from tests.baselines.baselines_helpers import T0, run

CFG = BaselinesConfig()
PROBE = "artifact_roundtrip"
NORMAL = {"upload": 0.2, "download": 0.1}
BASELINES: dict[Key, Baseline] = {
    (PROBE, ""): Baseline(PROBE, "", 0.3, 500, T0, "7-day p95"),
    (PROBE, "upload"): Baseline(PROBE, "upload", 0.2, 500, T0, "7-day p95"),
    (PROBE, "download"): Baseline(PROBE, "download", 0.1, 500, T0, "7-day p95"),
}


@pytest.mark.parametrize(
    ("took", "baseline", "slow"),
    [
        (0.61, 0.2, True),  # over 3x
        (0.6, 0.2, False),  # exactly 3x is not over it
        (0.007, 0.002, False),  # 3.5x of a loopback-fast step, but only 5 ms slower: the floor
        (0.3, 0.002, True),  # under the floor, yet slower by more than min_slowdown
        (0.16, 0.05, True),  # at the floor: judged by the factor alone
    ],
    ids=["over-factor", "at-factor", "floor-holds", "floor-overcome", "at-floor"],
)
def test_slow_means_over_factor_times_baseline_with_a_floor(took: float, baseline: float, slow: bool) -> None:
    """factor x baseline, and under the 50 ms floor also at least 250 ms slower."""
    assert is_slow(took, baseline, CFG) is slow


def test_a_single_slow_run_changes_nothing_but_its_count() -> None:
    """One slow run: counted (1 in a row), result unchanged; a normal run after it resets the count."""
    slow = run({"upload": 0.9, "download": 0.1})
    judged = judge(slow, BASELINES, {}, CFG)
    assert judged.result == slow
    assert judged.streaks[(PROBE, "upload")] == 1
    assert not judged.regressed
    after = judge(run(NORMAL), BASELINES, judged.streaks, CFG)
    assert after.streaks[(PROBE, "upload")] == 0


def test_n_slow_runs_in_a_row_degrade_the_step_naming_the_baseline() -> None:
    """The 3rd slow run in a row: the step DEGRADED, cause latency_regression, the baseline in words."""
    streaks: dict[Key, int] = {}
    results = []
    for _ in range(3):
        judged = judge(run({"upload": 0.62, "download": 0.1}), BASELINES, streaks, CFG)
        streaks = judged.streaks
        results.append(judged)
    assert [j.result.status for j in results] == [Status.PASS, Status.PASS, Status.DEGRADED]
    upload = results[-1].result.steps[0]
    assert upload.status is Status.DEGRADED
    assert upload.diagnosis is not None
    assert upload.diagnosis.cause == LATENCY_REGRESSION
    assert upload.message == "upload took 0.62 s, 3.1\u00d7 its 7-day p95 of 0.20 s (3 runs in a row)"
    assert results[-1].result.steps[1].status is Status.PASS
    # Still slow: stays regressed, counting on.
    again = judge(run({"upload": 0.7, "download": 0.1}), BASELINES, streaks, CFG)
    assert again.streaks[(PROBE, "upload")] == 4
    assert again.result.status is Status.DEGRADED


def test_a_fail_stays_fail_and_changes_no_count() -> None:
    """A FAIL run is handed on as it is and neither counts nor resets the slow runs in a row."""
    failed = run({"upload": 5.0, "download": 0.1}, failing="download")
    judged = judge(failed, BASELINES, {(PROBE, "upload"): 2}, CFG)
    assert judged.result == failed
    assert judged.streaks == {(PROBE, "upload"): 2}


def test_a_regressed_run_without_a_regressed_step_marks_the_step_that_lost_most() -> None:
    """The run as a whole 3x its baseline while each step stays under 3x its own: the step with the
    most time over its baseline carries the regression (the incident needs a step to name)."""
    baselines = {
        (PROBE, ""): Baseline(PROBE, "", 0.1, 500, T0, "7-day p95"),
        (PROBE, "upload"): Baseline(PROBE, "upload", 0.2, 500, T0, "7-day p95"),
        (PROBE, "download"): Baseline(PROBE, "download", 0.1, 500, T0, "7-day p95"),
    }
    streaks = {(PROBE, ""): 2}
    judged = judge(run({"upload": 0.5, "download": 0.2}), baselines, streaks, CFG)
    marked = {s.name: s for s in judged.result.steps}
    assert marked["upload"].status is Status.DEGRADED
    assert marked["upload"].message.startswith("artifact_roundtrip took 0.70 s, 7.0\u00d7 its 7-day p95")
    assert marked["download"].status is Status.PASS


def test_steps_without_a_baseline_are_not_judged() -> None:
    """No baseline, no count and no verdict, however slow."""
    judged = judge(run({"upload": 60.0}), {}, {(PROBE, "upload"): 5}, CFG)
    assert judged.findings == ()
    assert judged.streaks == {}


def _histogram(step: str, seconds: float, runs: int, first_hour_ago_h: float) -> LatencyHistogram:
    counts = [0] * LATENCY_BUCKETS
    counts[bucket_index(seconds)] = runs
    return LatencyHistogram(PROBE, step, T0 - timedelta(hours=first_hour_ago_h), tuple(counts))


@pytest.mark.parametrize(
    ("runs", "hours", "has_baseline"),
    [(100, 24, True), (99, 48, False), (500, 23, False)],
    ids=["enough", "too-few-runs", "too-short-span"],
)
def test_a_baseline_needs_min_runs_over_min_span(runs: int, hours: float, has_baseline: bool) -> None:
    """Below 100 runs or 24 h of history: no baseline (off until enough history exists)."""
    got = baselines_from([_histogram("upload", 0.3, runs, hours)], CFG, T0)
    assert ((PROBE, "upload") in got) is has_baseline


@pytest.mark.parametrize(
    ("window", "q", "name"),
    [(604800.0, 0.95, "7-day p95"), (43200.0, 0.99, "12-hour p99"), (5400.0, 0.5, "90-minute p50")],
    ids=["days", "hours", "minutes"],
)
def test_the_baseline_is_named_in_words(window: float, q: float, name: str) -> None:
    """The window and percentile as people say them."""
    assert baseline_name(window, q) == name
