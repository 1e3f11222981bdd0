"""The Markdown run report (``synthmon report``): one run of every probe, compared with the previous one.

Modelled on the incident report on-call once wrote by hand after each test session (the seed of
this project): an overall status line, an executive summary, one section per probe with its steps
and status marks, the failing step's HTTP status and diagnosis, a "Comparison with previous run"
table and the required actions gathered from the diagnoses.

:func:`render_report` is pure: results and ``generated_at`` in, text out. It never sees secrets;
the results it renders were masked by the runner, and the CLI masks its output once more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.results import ProbeResult
from probes.base import Status, StepResult

#: One mark per status, as the seed report used them. ERROR is "unknown": the monitor could not check.
MARKS: dict[Status, str] = {
    Status.PASS: "✅",
    Status.DEGRADED: "⚠️",
    Status.FAIL: "❌",
    Status.SKIPPED: "⏭️",
    Status.ERROR: "❓",
}

#: How bad a checked status is, for Improved / Regressed. ERROR is not on this scale: a run the
#: monitor could not check says nothing about the platform, so it is compared separately.
_RANK: dict[Status, int] = {Status.PASS: 0, Status.DEGRADED: 1, Status.SKIPPED: 1, Status.FAIL: 2}

#: Step messages can hold a body excerpt; a report line is not the place for all of it.
MESSAGE_LIMIT = 300

NO_CHANGE, IMPROVED, REGRESSED, CHANGED = "No change", "Improved", "Regressed", "Changed"
NEW, NOT_CHECKED, NOW_CHECKED = "New", "Not checked", "Now checked"


@dataclass(frozen=True, slots=True)
class Comparison:
    """One probe's row of the comparison table."""

    probe: str
    previous: ProbeResult | None
    current: ProbeResult
    change: str


def compare(previous: ProbeResult | None, current: ProbeResult) -> str:
    """How ``current`` compares with ``previous`` of the same probe.

    ``No change`` / ``Improved`` / ``Regressed`` by status; ``Changed`` when it still fails but
    differently (another step, HTTP status or cause: on-call must look again); ``New`` without a
    previous run; ``Not checked`` / ``Now checked`` when either run was an ERROR (the monitor's own
    failure is neither an improvement nor a regression of the platform).
    """
    if previous is None:
        return NEW
    if current.status is Status.ERROR:
        return NO_CHANGE if previous.status is Status.ERROR else NOT_CHECKED
    if previous.status is Status.ERROR:
        return NOW_CHECKED
    before, now = _RANK[previous.status], _RANK[current.status]
    if now < before:
        return IMPROVED
    if now > before:
        return REGRESSED
    if not current.status.ok and _signature(previous) != _signature(current):
        return CHANGED
    return NO_CHANGE


def _signature(result: ProbeResult) -> tuple[str | None, int | None, str | None]:
    step = result.failing_step
    if step is None:
        return (None, None, None)
    return (step.name, step.http_status, step.diagnosis.cause if step.diagnosis else step.error_class)


def render_report(
    current: Sequence[ProbeResult],
    previous: Sequence[ProbeResult],
    *,
    environment: str,
    generated_at: datetime,
) -> str:
    """The Markdown report of ``current`` (one result per probe, in display order), each probe
    compared with its run in ``previous`` (matched by probe name; missing ones are "New")."""
    before = {r.probe: r for r in previous}
    rows = [Comparison(r.probe, before.get(r.probe), r, compare(before.get(r.probe), r)) for r in current]
    parts = [
        _header(current, environment, generated_at),
        _summary(current, rows, has_previous=bool(previous)),
        _sections(current),
        _comparison(rows, has_previous=bool(previous)),
        _actions(current),
    ]
    return "\n".join(parts)


# --- sections ------------------------------------------------------------------------------------


def _header(current: Sequence[ProbeResult], environment: str, generated_at: datetime) -> str:
    return (
        f"# Synthetic monitoring report: {_text(environment) or 'unknown environment'}\n\n"
        f"**Generated**: {_when(generated_at)}  \n"
        f"**Environment**: `{_code(environment)}`  \n"
        f"**Status**: {_overall(current)}\n"
    )


def _overall(current: Sequence[ProbeResult]) -> str:
    """The one status line: the worst thing first, named by probe."""
    if not current:
        return f"{MARKS[Status.ERROR]} **NO DATA - no probe runs to report**"
    failing = [r for r in current if r.status is Status.FAIL]
    errors = [r for r in current if r.status is Status.ERROR]
    degraded = [r for r in current if r.status is Status.DEGRADED]
    total = len(current)
    if failing:
        causes = "; ".join(f"{cause} ({', '.join(probes)})" for cause, probes in _causes(failing))
        return f"{MARKS[Status.FAIL]} **FAILED - {len(failing)} of {total} probes failing: {causes}**"
    if errors:
        return (
            f"{MARKS[Status.ERROR]} **INCOMPLETE - the monitor could not check "
            f"{', '.join(r.probe for r in errors)}**"
        )
    if degraded:
        slow = ", ".join(r.probe for r in degraded)
        return f"{MARKS[Status.DEGRADED]} **DEGRADED - slow but working: {slow}**"
    return f"{MARKS[Status.PASS]} **PASSED - all {total} probes passing**"


def _causes(failing: Sequence[ProbeResult]) -> list[tuple[str, list[str]]]:
    """Failing probes grouped by diagnosed cause (else by their failing step), most widespread first:
    one broken artifact route failing two probes is the headline, as in the seed report."""
    groups: dict[str, list[str]] = {}
    for r in failing:
        step = r.failing_step
        if step is not None and step.diagnosis is not None:
            key = step.diagnosis.cause
        else:
            key = f"failing at {step.name}" if step is not None else "failing"
        groups.setdefault(key, []).append(r.probe)
    # sorted() is stable: equal counts keep the order the probes were given in.
    return sorted(groups.items(), key=lambda item: -len(item[1]))


def _summary(current: Sequence[ProbeResult], rows: Sequence[Comparison], *, has_previous: bool) -> str:
    lines = ["## Executive summary", ""]
    if not current:
        lines.append("No probe has a run to report: nothing was run or stored yet.")
        return "\n".join(lines) + "\n"
    working = [r.probe for r in current if r.status.ok]
    if working:
        lines.append(f"- Working: {', '.join(working)}.")
    for r in current:
        if r.status is Status.FAIL:
            lines.append(f"- Failing: {r.probe}{_failure_brief(r)}.")
    for r in current:
        if r.status is Status.ERROR:
            lines.append(f"- Not checked (monitor error): {r.probe}{_failure_brief(r)}.")
    if not has_previous:
        lines.append("- No previous run to compare with.")
    else:
        counts = {c: sum(1 for row in rows if row.change == c) for c in (IMPROVED, REGRESSED, CHANGED)}
        moved = [f"{n} {c.lower()}" for c, n in counts.items() if n]
        lines.append(
            "- Compared with the previous run: " + (", ".join(moved) if moved else "no change") + "."
        )
    return "\n".join(lines) + "\n"


def _failure_brief(result: ProbeResult) -> str:
    """`` at upload (HTTP 404, artifact_route_not_deployed)``; empty when no step failed."""
    step = result.failing_step
    if step is None:
        return ""
    facts = []
    if step.http_status is not None:
        facts.append(f"HTTP {step.http_status}")
    if step.diagnosis is not None:
        facts.append(step.diagnosis.cause)
    elif step.error_class:
        facts.append(step.error_class)
    return f" at {step.name}" + (f" ({', '.join(facts)})" if facts else "")


def _sections(current: Sequence[ProbeResult]) -> str:
    out = ["## Probe results", ""]
    for i, r in enumerate(current, 1):
        out.append(f"### {i}. {r.probe} {MARKS[r.status]} {r.status.value}")
        out.append("")
        out.append(
            f"Kind `{_code(r.kind)}`, run `{_code(r.run_id)}` at {_when(r.started_at)}, "
            f"{r.duration_s:.2f} s; {_tally(r)}."
        )
        out.append("")
        for s in r.steps:
            out.append(f"- {MARKS[s.status]} {_code_span(s.name)}: {s.status.value}{_step_facts(s)}")
        failing = r.failing_step
        if failing is not None:
            out.append("")
            out.extend(_failing_detail(failing))
        out.append("")
    return "\n".join(out)


def _tally(result: ProbeResult) -> str:
    """The run's own summary, ``9/10 checks passed, failing: registry_health`` (``, 4 skipped``
    when later steps could not run)."""
    checks = result.checks
    text = f"{checks.passed}/{checks.total} checks passed"
    if checks.skipped:
        text += f", {checks.skipped} skipped"
    if checks.failing:
        text += ", failing: " + ", ".join(_code_span(name) for name in checks.failing)
    return text


def _step_facts(step: StepResult) -> str:
    if step.status is Status.SKIPPED:
        return ""  # a step that never ran has no duration or HTTP status worth showing
    facts = [f"{step.duration_s:.2f} s"]
    if step.http_status is not None:
        facts.append(f"HTTP {step.http_status}")
    text = f" ({', '.join(facts)})"
    if step.status is Status.DEGRADED and step.message:
        text += f": {_text(step.message)}"
    return text


def _failing_detail(step: StepResult) -> list[str]:
    http = f" answered HTTP {step.http_status}" if step.http_status is not None else " failed"
    where = f" on {_code_span(step.path)}" if step.path else ""
    lines = [
        f"**Failing step** {_code_span(step.name)}{http}{where}"
        + (f" ({_code_span(step.error_class)})" if step.error_class else "")
        + ":"
    ]
    if step.message:
        lines.append("")
        lines.append(f"> {_text(step.message)}")
    if step.diagnosis is not None:
        lines.append("")
        lines.append(f"- Cause: {_code_span(step.diagnosis.cause)}")
        lines.append(f"- Hint: {_text(step.diagnosis.hint)}")
        if step.diagnosis.action:
            lines.append(f"- Action: {_text(step.diagnosis.action)}")
    return lines


def _comparison(rows: Sequence[Comparison], *, has_previous: bool) -> str:
    out = ["## Comparison with previous run", ""]
    if not has_previous:
        out.append("No previous run stored: nothing to compare with.")
        return "\n".join(out) + "\n"
    out.append("| Component | Previous | Current | Status |")
    out.append("|---|---|---|---|")
    for row in rows:
        prev = _cell(row.previous) if row.previous is not None else "— (no run)"
        change = row.change
        # As in the seed: a change that still leaves the probe failing, or makes it fail, stands out.
        if not row.current.status.ok:
            change = f"**{change}**"
        out.append(f"| {_cell_text(row.probe)} | {prev} | {_cell(row.current)} | {change} |")
    return "\n".join(out) + "\n"


def _cell(result: ProbeResult) -> str:
    return _cell_text(f"{MARKS[result.status]} {result.status.value}{_failure_brief(result)}")


def _actions(current: Sequence[ProbeResult]) -> str:
    """Required actions: each distinct diagnosis action once, with every probe/step that needs it."""
    out = ["## Required actions", ""]
    actions: dict[str, list[str]] = {}
    undiagnosed: list[tuple[str, StepResult]] = []
    for r in current:
        step = r.failing_step
        if step is None:
            continue
        where = f"{r.probe}/{step.name}"
        if step.diagnosis is not None and step.diagnosis.action:
            actions.setdefault(step.diagnosis.action, []).append(where)
        else:
            undiagnosed.append((where, step))
    n = 0
    # The action that unblocks the most probes first (sorted() is stable for ties).
    for action, wheres in sorted(actions.items(), key=lambda item: -len(item[1])):
        n += 1
        out.append(f"{n}. {_text(action)} (for {', '.join(_code_span(w) for w in wheres)})")
    for where, step in undiagnosed:
        n += 1
        hint = f": {_text(step.diagnosis.hint)}" if step.diagnosis is not None else ""
        out.append(
            f"{n}. Investigate {_code_span(where)} ({step.status.value}{hint}); no known signature matched."
        )
    if not current:
        # Nothing was checked: saying "every probe passed" here would be a false all-clear.
        out.append("None known: no probe has a run to act on.")
    elif n == 0:
        out.append("None: every probe passed.")
    else:
        out.append("")
        out.append(
            "Once fixed, verify with `synthmon report --run` (or `synthmon once`: exit 0 when all pass)."
        )
    return "\n".join(out) + "\n"


# --- escaping ------------------------------------------------------------------------------------


def _when(t: datetime) -> str:
    aware = t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _text(value: str) -> str:
    """Free text on one line, shortened: a body excerpt must not break the document's structure."""
    flat = " ".join(value.split())
    if len(flat) > MESSAGE_LIMIT:
        flat = flat[: MESSAGE_LIMIT - 1] + "…"
    return flat


def _code(value: str) -> str:
    return _text(value).replace("`", "'")


def _code_span(value: str) -> str:
    return f"`{_code(value)}`"


def _cell_text(value: str) -> str:
    """Text safe inside a table cell (a ``|`` would end the cell)."""
    return _text(value).replace("|", "\\|")
