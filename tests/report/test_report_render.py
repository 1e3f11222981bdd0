"""``render_report``: golden Markdown for the seed's situation, a recovery and a first run; comparison rules.

The golden files are the reviewed output. After an intended change to the report, regenerate them
with ``SYNTHMON_UPDATE_GOLDEN=1 .venv/bin/pytest tests/report`` and review the diff.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from monitor.report import (
    CHANGED,
    IMPROVED,
    NEW,
    NO_CHANGE,
    NOT_CHECKED,
    NOW_CHECKED,
    REGRESSED,
    compare,
    render_report,
)
from monitor.results import ProbeResult
from probes.base import Diagnosis, Status, StepResult

from .report_scenarios import (
    GENERATED_AT,
    T_CURRENT,
    T_PREVIOUS,
    artifact_roundtrip,
    auth,
    recovered,
    seed_situation,
)

GOLDEN = Path(__file__).parent / "golden"

Scenario = Callable[[], tuple[list[ProbeResult], list[ProbeResult]]]
SCENARIOS: dict[str, Scenario] = {
    "seed_no_change": lambda: (seed_situation(T_CURRENT), seed_situation(T_PREVIOUS)),
    "recovery_improved": lambda: (recovered(T_CURRENT), seed_situation(T_PREVIOUS)),
    "seed_first_run": lambda: (seed_situation(T_CURRENT), []),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_report_matches_golden(name: str) -> None:
    """The rendered report is exactly the reviewed golden Markdown of its scenario."""
    current, previous = SCENARIOS[name]()
    text = render_report(current, previous, environment="prod", generated_at=GENERATED_AT)
    golden = GOLDEN / f"{name}.md"
    if os.environ.get("SYNTHMON_UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def _section(text: str, title: str) -> str:
    """The body of the ``## title`` section."""
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_seed_report_names_the_incident() -> None:
    """The seed situation: FAILED led by the artifact route, 9/10 ALB checks, every row No change."""
    text = render_report(
        seed_situation(T_CURRENT), seed_situation(T_PREVIOUS), environment="prod", generated_at=GENERATED_AT
    )
    status = next(line for line in text.splitlines() if line.startswith("**Status**"))
    assert (
        "FAILED - 3 of 5 probes failing: artifact_route_not_deployed (artifact_roundtrip, registration)"
        in status
    )
    assert "9/10 checks passed" in text
    assert "**Failing step** `upload` answered HTTP 404" in text
    rows = [
        line for line in _section(text, "Comparison with previous run").splitlines() if line.startswith("| ")
    ]
    assert len(rows) == 6  # header + five probes
    assert all(row.rstrip(" |").endswith(NO_CHANGE) or "No change**" in row for row in rows[1:])
    actions = _section(text, "Required actions")
    # The artifact route blocks two probes, so it is the first action, once, naming both.
    assert (
        actions.strip()
        .splitlines()[0]
        .startswith("1. Check the proxy's route for /api/mlflow/api/2.0/mlflow-artifacts/*")
    )
    assert "`artifact_roundtrip/upload`, `registration/log_model`" in actions
    assert actions.count("mlflow-artifacts/*") == 1


def test_recovery_marks_improved_and_needs_no_action() -> None:
    """After the fix the report is PASSED, the three formerly failing probes read Improved, no actions."""
    text = render_report(
        recovered(T_CURRENT), seed_situation(T_PREVIOUS), environment="prod", generated_at=GENERATED_AT
    )
    assert "**Status**: ✅ **PASSED - all 5 probes passing**" in text
    table = _section(text, "Comparison with previous run")
    assert table.count(f"| {IMPROVED} |") == 3
    assert table.count(f"| {NO_CHANGE} |") == 2
    assert "None: every probe passed." in _section(text, "Required actions")


def test_first_run_has_no_comparison_table() -> None:
    """Without any previous run the comparison section says so instead of a table."""
    text = render_report(seed_situation(T_CURRENT), [], environment="prod", generated_at=GENERATED_AT)
    assert "No previous run stored" in _section(text, "Comparison with previous run")
    assert "| Component |" not in text
    assert "- No previous run to compare with." in _section(text, "Executive summary")


def test_no_results_is_a_no_data_report() -> None:
    """An empty run list renders a NO DATA report rather than a misleading PASSED."""
    text = render_report([], [], environment="prod", generated_at=GENERATED_AT)
    assert "NO DATA" in text
    assert "PASSED" not in text


def _with(
    result: ProbeResult,
    status: Status,
    *,
    name: str = "upload",
    http_status: int | None = None,
    error_class: str | None = None,
) -> ProbeResult:
    """``result`` with its steps replaced by one step ``name`` of ``status``."""
    first = StepResult(name=name, status=status, http_status=http_status, error_class=error_class)
    return replace(result, status=status, steps=(first,))


PASS_RUN = auth(T_CURRENT)
FAIL_404 = _with(PASS_RUN, Status.FAIL, http_status=404)
FAIL_503 = _with(PASS_RUN, Status.FAIL, http_status=503)
FAIL_OTHER_STEP = _with(PASS_RUN, Status.FAIL, name="download", http_status=404)
DEGRADED_RUN = _with(PASS_RUN, Status.DEGRADED)
ERROR_RUN = _with(PASS_RUN, Status.ERROR, error_class="MissingSecretError")


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, PASS_RUN, NEW),
        (PASS_RUN, PASS_RUN, NO_CHANGE),
        (FAIL_404, FAIL_404, NO_CHANGE),
        (FAIL_404, PASS_RUN, IMPROVED),
        (DEGRADED_RUN, PASS_RUN, IMPROVED),
        (FAIL_404, DEGRADED_RUN, IMPROVED),
        (PASS_RUN, DEGRADED_RUN, REGRESSED),
        (PASS_RUN, FAIL_404, REGRESSED),
        (FAIL_404, FAIL_503, CHANGED),
        (FAIL_404, FAIL_OTHER_STEP, CHANGED),
        (PASS_RUN, ERROR_RUN, NOT_CHECKED),
        (ERROR_RUN, FAIL_404, NOW_CHECKED),
        (ERROR_RUN, ERROR_RUN, NO_CHANGE),
    ],
    ids=[
        "no-previous-new",
        "pass-pass",
        "same-failure",
        "fail-to-pass",
        "degraded-to-pass",
        "fail-to-degraded",
        "pass-to-degraded",
        "pass-to-fail",
        "fail-other-http-status",
        "fail-other-step",
        "current-error-not-checked",
        "previous-error-now-checked",
        "error-error",
    ],
)
def test_compare(previous: ProbeResult | None, current: ProbeResult, expected: str) -> None:
    """compare() classifies a probe's change between two runs."""
    assert compare(previous, current) == expected


def test_untrusted_text_cannot_break_the_markdown() -> None:
    """Pipes, newlines and backticks in messages, paths and causes stay inside their line and cell."""
    step = StepResult(
        name="up`load",
        status=Status.FAIL,
        http_status=500,
        message="line one\n## injected heading\n| a | b |" + "x" * 1000,
        path="/a`b",
        diagnosis=Diagnosis(cause="weird|cause", hint="h\nint", action="act\n\nnow"),
    )
    bad = replace(artifact_roundtrip(T_CURRENT, routed=False), steps=(step,))
    text = render_report([bad], [bad], environment="prod", generated_at=GENERATED_AT)
    assert "\n## injected heading" not in text
    row = next(line for line in text.splitlines() if line.startswith("| artifact_roundtrip"))
    assert row.count(" | ") == 3  # four cells: the cause's pipe is escaped
    assert "weird\\|cause" in row
    quote = next(line for line in text.splitlines() if line.startswith("> "))
    assert len(quote) < 310
    assert quote.endswith("…")
    assert "`up'load`" in text
    assert "`/a'b`" in text


def test_naive_timestamps_are_shown_as_utc() -> None:
    """A naive generated_at is taken as UTC, an aware one is converted to UTC."""
    naive = datetime(2025, 7, 22, 10, 38, 5)
    aware = datetime.fromisoformat("2025-07-22T12:38:05+02:00")
    for when in (naive, aware):
        text = render_report([], [], environment="prod", generated_at=when)
        assert "**Generated**: 2025-07-22 10:38:05 UTC" in text
