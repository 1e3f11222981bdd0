"""Error budget arithmetic against hand-computed tables (monitor.slo.budget, monitor.slo.evaluate)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.slo import budget
from monitor.slo.budget import Counts
from monitor.slo.config import BurnAlert, SloConfig
from monitor.slo.evaluate import burn_message, burn_result, evaluate
from probes.base import Status

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("good", "bad", "objective", "attainment", "consumed", "remaining", "rate"),
    [
        # 1000 runs, 1 bad at 99.9 %: the whole budget (1 run) spent, burning at exactly 1x.
        (999, 1, 0.999, 0.999, 1.0, 0.0, 1.0),
        # 1000 runs, no bad: nothing spent.
        (1000, 0, 0.999, 1.0, 0.0, 1.0, 0.0),
        # 8640 runs (30 days at 5 min), 13 bad at 99.5 %: budget 43.2 runs, 13/43.2 spent.
        (8627, 13, 0.995, 8627 / 8640, 13 / 43.2, 1 - 13 / 43.2, 13 / 43.2),
        # 60 runs in an hour, 6 bad at 99.5 %: 10 % errors = 20x the 0.5 % budget.
        (54, 6, 0.995, 0.9, 20.0, -19.0, 20.0),
        # 12 runs, all bad, at 99 %: 100x.
        (0, 12, 0.99, 0.0, 100.0, -99.0, 100.0),
        # 200 runs, 3 bad at 99 %: budget 2 runs, 1.5 of it spent (overspent by half).
        (197, 3, 0.99, 0.985, 1.5, -0.5, 1.5),
    ],
    ids=["exactly-spent", "untouched", "thirty-days", "hour-at-20x", "all-bad", "overspent"],
)
def test_budget_math_matches_the_hand_computed_table(
    good: int, bad: int, objective: float, attainment: float, consumed: float, remaining: float, rate: float
) -> None:
    """Attainment, budget consumed and left, and burn rate are the workbook's formulas."""
    c = Counts(good, bad)
    assert budget.attainment(c) == pytest.approx(attainment)
    assert budget.budget_consumed(c, objective) == pytest.approx(consumed)
    assert budget.budget_remaining(c, objective) == pytest.approx(remaining)
    assert budget.burn_rate(c, objective) == pytest.approx(rate)


def test_no_runs_is_no_data_never_a_perfect_score() -> None:
    """Without counted runs every figure is None (no data), not 100 % or 0x."""
    empty = Counts()
    assert budget.attainment(empty) is None
    assert budget.budget_remaining(empty, 0.999) is None
    assert budget.burn_rate(empty, 0.999) is None
    assert not budget.pair(empty, empty, 1.0, 0.999).firing


@pytest.mark.parametrize(
    ("status", "counts"),
    [
        (Status.PASS, True),
        (Status.DEGRADED, True),
        (Status.FAIL, False),
        (Status.ERROR, None),
        (Status.SKIPPED, None),
    ],
    ids=lambda v: str(v),
)
def test_which_runs_count(status: Status, counts: bool | None) -> None:
    """good = PASS or DEGRADED, bad = FAIL; ERROR and SKIPPED count on neither side."""
    assert budget.classify(status) is counts


@pytest.mark.parametrize(
    ("long", "short", "factor", "firing"),
    [
        # 99.5 %: 14.4x means 7.2 % of runs failing.
        (Counts(53, 7), Counts(0, 5), 14.4, True),  # 11.7 % and 100 %: both burn
        (Counts(56, 4), Counts(0, 5), 14.4, False),  # the hour at 6.7 %: a blip, not a burn
        (Counts(53, 7), Counts(5, 0), 14.4, False),  # the short window recovered: resolves
        (Counts(334, 26), Counts(28, 2), 6.0, True),  # 7.2 % and 6.7 % against 3 %
        (Counts(355, 5), Counts(30, 0), 1.0, False),
        (Counts(53, 7), Counts(), 14.4, False),  # no run in the short window: not confirmed
    ],
    ids=["fast-burn", "blip", "recovered", "slow-burn", "quiet", "short-empty"],
)
def test_a_pair_fires_only_when_both_windows_burn_at_its_factor(
    long: Counts, short: Counts, factor: float, firing: bool
) -> None:
    """The multiwindow verdict: long and short window both at or above the factor."""
    assert budget.pair(long, short, factor, 0.995).firing is firing


def _slo(**kw: object) -> SloConfig:
    return SloConfig.model_validate({"probe": "auth", "objective": 99.5, **kw})


def test_evaluate_reads_each_window_for_the_slo_and_says_its_state() -> None:
    """Counts per window length give the window's attainment, each pair's rates and the state."""
    slo = _slo()
    key = ("auth", None)
    counts = {
        30 * 86400.0: {key: (8627, 13)},
        3600.0: {key: (53, 7)},
        300.0: {key: (0, 5)},
        6 * 3600.0: {key: (350, 10)},
        1800.0: {key: (25, 5)},
        86400.0: {key: (1430, 10)},
        7200.0: {key: (110, 10)},
        # 3 days: 30 of 4330 = 0.69 %, over the 1x (0.5 %) of the slowest ticket pair.
        3 * 86400.0: {key: (4300, 30)},
    }
    (status,) = evaluate([slo], counts, NOW)
    assert status.attainment == pytest.approx(8627 / 8640)
    assert status.budget_remaining == pytest.approx(1 - 13 / 43.2)
    assert [p.firing for p in status.pairs] == [True, False, False, True]
    assert status.state == "page"
    assert status.rates[300.0] == pytest.approx(200.0)


def test_the_short_window_is_this_location_s_own() -> None:
    """With ``local`` counts, a pair fires only when this location's short window burns too: the
    overall burn of another zone's failures alone does not make this daemon report a burn."""
    slo = _slo(alerts=[{"long": "1h", "short": "5m", "factor": 14.4, "severity": "page"}])
    key = ("auth", None)
    # Overall: one location of three failing for the last hour (a third of the runs bad).
    counts = {30 * 86400.0: {key: (8600, 40)}, 3600.0: {key: (120, 60)}, 300.0: {key: (10, 5)}}
    (burning,) = evaluate([slo], counts, NOW, local={300.0: {key: (0, 5)}})
    (quiet,) = evaluate([slo], counts, NOW, local={300.0: {key: (5, 0)}})
    (no_runs_here,) = evaluate([slo], counts, NOW, local={})
    (overall,) = evaluate([slo], counts, NOW)
    assert [p.firing for p in burning.pairs] == [True]
    assert [p.firing for p in quiet.pairs] == [False]
    assert [p.firing for p in no_runs_here.pairs] == [False]
    assert [p.firing for p in overall.pairs] == [True]


def test_the_burn_reads_in_words_and_becomes_a_failing_pseudo_run() -> None:
    """The incident text names the SLO, the factor, each window's rate and the budget left."""
    slo = _slo(probe="auth", objective=99.9)
    key = ("auth", None)
    # 1 h: 162 of 10000 = 1.62 % = 16.2x; 5 min: 20 of 1000 = 20x; 30 days: 62 of 100 budget runs spent.
    counts = {
        30 * 86400.0: {key: (99938, 62)},
        3600.0: {key: (9838, 162)},
        300.0: {key: (980, 20)},
    }
    fast = slo.model_copy(update={"alerts": (BurnAlert(long=3600, short=300, factor=14.4),)})
    (status,) = evaluate([fast], counts, NOW)
    assert burn_message(status) == (
        "auth is burning its 30-day error budget 14.4× too fast: 1 h at 16.2×, 5 min at 20.0×; "
        "38 % of the budget left"
    )
    run = burn_result(status, environment="production")
    assert run.probe == "slo:auth"
    assert run.status is Status.FAIL
    (step,) = run.steps
    assert step.diagnosis is not None
    assert step.diagnosis.cause == "error_budget_burn"
    assert step.error_class == "page"


def test_a_quiet_slo_is_a_passing_pseudo_run() -> None:
    """No pair firing: the pseudo-run passes and says how much budget is left."""
    key = ("auth", None)
    lengths = (300.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0, 259200.0, 2592000.0)
    counts = {w: {key: (1000, 0)} for w in lengths}
    (status,) = evaluate([_slo()], counts, NOW)
    assert status.state == "ok"
    run = burn_result(status)
    assert run.status is Status.PASS
    assert run.steps[0].message == "auth is within its 30-day error budget; 100 % of the budget left"
