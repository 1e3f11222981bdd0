"""The outage benchmark stays runnable: its smoke mode end to end, against a real daemon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_smoke_run_reports_incident_evaluation_through_an_outage() -> None:
    """--smoke runs one daemon whose every probe fails and prints its row: results made and
    evaluated, nothing dropped at ten probes."""
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "outage.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = [line for line in done.stdout.splitlines() if line.startswith(f"| {REPO} |")]
    _tree, made, evaluated, _depth, dropped, _missed, _cpu = [c.strip() for c in row.strip("|").split("|")]
    assert float(made) > 0
    assert float(evaluated) > 0
    assert dropped == "0"
