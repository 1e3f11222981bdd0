"""What ``synthmon once`` prints and returns: the exit code, the JSON document and the table.

Pure functions of the results (the JUnit report is :mod:`monitor.junit`), kept apart from the
command so pipelines' formats can be tested and read on their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monitor.cliutil import EXIT_FAILED, EXIT_OK, table_lines, terminal_width, wrap_words
from monitor.results import SCHEMA_VERSION, ProbeResult
from probes.base import Status

#: ``once`` when no FAIL but a check could not run (ERROR): the monitor broke, not the platform.
EXIT_MONITOR = 3


def once_exit_code(results: Sequence[ProbeResult]) -> int:
    """0 all PASS/DEGRADED; 1 any FAIL (the platform); else 3 (ERROR: the monitor could not check).

    A FAIL wins over an ERROR: a pipeline that rolls back on 1 must not be told "monitor broken"
    while the platform is answering wrongly. A run with nothing checked (every step SKIPPED) is 3.
    """

    if all(r.status.ok for r in results):
        return EXIT_OK
    if any(r.status is Status.FAIL for r in results):
        return EXIT_FAILED
    return EXIT_MONITOR


def once_json(environment: str, results: Sequence[ProbeResult]) -> dict[str, Any]:
    """The stable JSON document of ``synthmon once --format json`` (schema 1)."""
    from probes.base import Status

    return {
        "schema": SCHEMA_VERSION,
        "environment": environment,
        "status": "PASS" if all(r.status.ok for r in results) else "FAIL",
        "probes": [
            {
                "probe": r.probe,
                "kind": r.kind,
                "status": r.status.value,
                "duration_s": round(r.duration_s, 4),
                "run_id": r.run_id,
                "checks": r.checks.to_dict(),
                "steps": [
                    {
                        "step": s.name,
                        "status": s.status.value,
                        "duration_s": round(s.duration_s, 4),
                        "http_status": s.http_status,
                        "error": None if s.status in (Status.PASS, Status.SKIPPED) else s.message,
                        "error_class": s.error_class,
                        "diagnosis": (
                            {
                                "cause": s.diagnosis.cause,
                                "hint": s.diagnosis.hint,
                                "action": s.diagnosis.action,
                            }
                            if s.diagnosis
                            else None
                        ),
                    }
                    for s in r.steps
                ],
            }
            for r in results
        ],
    }


#: Lines of a step's message in the ``once`` table; ``--full`` shows the whole message.
ONCE_MESSAGE_LINES = 2


def once_table(results: Sequence[ProbeResult], *, width: int | None = None, full: bool = False) -> str:
    """A plain-text table: one line per probe, one indented line per step, diagnoses underneath.

    It fits ``width`` (default: the terminal's): a step's message wraps between words under the
    DETAIL column, at most :data:`ONCE_MESSAGE_LINES` lines ending in "…" unless ``full``. No word
    is ever cut; the whole message is one flag (``--full``) or ``--format json`` away.
    """

    width = width if width is not None else terminal_width()
    rows: list[list[str]] = [["PROBE / STEP", "STATUS", "DURATION", "HTTP", "DETAIL"]]
    notes: list[str] = []
    for r in results:
        failing = r.failing_step
        rows.append([r.probe, r.status.value, f"{r.duration_s:.2f}s", "", failing.name if failing else ""])
        for s in r.steps:
            detail = "" if s.status is Status.PASS else s.message
            http = str(s.http_status) if s.http_status is not None else "-"
            rows.append(["  " + s.name, s.status.value, f"{s.duration_s:.2f}s", http, detail])
            if s.diagnosis is not None:
                notes.append(f"{r.probe}/{s.name}: {s.diagnosis.cause}")
                for label, text in (("hint", s.diagnosis.hint), ("action", s.diagnosis.action)):
                    if text:
                        lines = wrap_words(text, width - 12)
                        notes.extend(
                            f"    {label + ':':<8}{line}" if i == 0 else " " * 12 + line
                            for i, line in enumerate(lines)
                        )
    lines, shortened = table_lines(rows, width=width, max_lines=None if full else ONCE_MESSAGE_LINES)
    out = "".join(line + "\n" for line in lines)
    if notes:
        out += "\nDiagnosis:\n" + "\n".join(notes) + "\n"
    if shortened:
        out += "\n(messages shortened; --full shows them whole)\n"
    return out


# --- check-config ------------------------------------------------------------------------------
