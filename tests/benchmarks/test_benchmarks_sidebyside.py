"""The side-by-side benchmark harness stays runnable: its smoke mode end to end, and its pure parts."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from monitor.store.runcodec import unpack_steps

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "benchmarks" / "sidebyside.py"


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sidebyside", HARNESS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sidebyside"] = module
    spec.loader.exec_module(module)
    return module


sidebyside = _harness()

needs_tools = pytest.mark.skipif(
    not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists())
    or not shutil.which("prometheus-blackbox-exporter"),
    reason="nginx and prometheus-blackbox-exporter are not installed (.ci/run installs them)",
)


@pytest.mark.parametrize(
    ("starts", "expected"),
    [
        ([[100.0, 101.0, 102.0]], [0.0, 0.0, 0.0]),
        ([[100.0, 101.01, 102.0]], [0.0, 0.01, 0.0]),
        # Probe 1 of 2 is staggered half an interval later; its 20 ms lateness is seen as such.
        ([[100.0, 101.0], [100.5, 101.52]], [0.0, 0.0, 0.0, 0.02]),
        # A run after a missed slot is still placed on its own slot.
        ([[100.003, 103.004]], [0.0, 0.001]),
        # A run 0.7 interval late is late, not early: it does not move the grid.
        ([[100.0, 101.0, 102.7, 103.0, 104.0]], [0.0, 0.0, 0.7, 0.0, 0.0]),
    ],
    ids=["on-grid", "one-late", "staggered-probes", "after-a-gap", "very-late"],
)
def test_lateness_is_measured_against_the_shared_schedule_grid(
    starts: list[list[float]], expected: list[float]
) -> None:
    """Start lateness places every run on the daemon's stagger-and-interval grid."""
    got = sidebyside.lateness_s(starts, 1.0)
    assert got == pytest.approx(expected, abs=1e-9)


def test_generated_history_copies_days_consistently(tmp_path: Path) -> None:
    """Two generated days: unique run ids, readable packed steps, rollups count every run."""
    db = sidebyside.history_db(2, cache=False)
    try:
        with sqlite3.connect(db) as con:
            runs, distinct = con.execute("SELECT count(*), count(DISTINCT run_id) FROM runs").fetchone()
            rolled = con.execute("SELECT sum(runs) FROM rollups WHERE step = ''").fetchone()[0]
            rows = con.execute(
                "SELECT r.probe, r.detail, count(s.id) FROM runs r JOIN steps s ON s.run_pk = r.id"
                " WHERE r.id % 997 = 0 GROUP BY r.id"
            ).fetchall()
        assert runs == distinct == 2 * 5 * 1440
        assert rolled == runs
        assert rows
        for probe, detail, n_steps in rows:
            names = [s["name"] for s in unpack_steps(detail)]
            assert names == sidebyside.SHIPPED_STEPS[probe]
            assert len(names) == n_steps
    finally:
        shutil.rmtree(db.parent, ignore_errors=True)


@needs_tools
def test_smoke_run_measures_both_monitors_against_nginx(tmp_path: Path) -> None:
    """--smoke runs every part once and prints one table with figures for both monitors."""
    raw = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(HARNESS), "--smoke", "--json", str(raw)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(raw.read_text())
    for monitor in ("synthmon", "blackbox"):
        # CPU time has a 10 ms tick: a few smoke checks may well read as 0 ms each.
        assert all(x >= 0 and math.isfinite(x) for x in res["cpu_ms"][monitor]), res["cpu_ms"]
        assert all(n > 0 for n in res["checks_n_cpu"][monitor]), res["checks_n_cpu"]
        assert res["rss_load_n_load"][monitor] > 0
    assert any(x > 0 for x in res["cpu_ms"]["synthmon"]), res["cpu_ms"]
    assert res["latency_err_synthmon"]
    assert res["latency_err_blackbox"]
    assert 0.2 <= sorted(res["true_latency"])[len(res["true_latency"]) // 2] < 0.3
    assert res["lateness_n_cpu"]
    (history,) = res["history"]
    assert history["runs"] == history["days"] * 5 * 1440
    assert history["uptime_s"]
    assert history["status_api_s"]
    assert done.stdout.startswith("| figure | synthmon | blackbox_exporter | ratio | target |")
    assert "CPU per HTTP check" in done.stdout
    assert "reported - true latency" in done.stdout
    # A ramp that went past the target's size also reports the start lateness at that size.
    harness = _harness()
    res.update(max_probes=400, lateness_max=[0.001] * 100, ramp_lateness={"250": [0.0012, 0.0345]})
    table = harness.render(res, harness.SMOKE)
    assert "| start lateness p50 / p99 at 250 probes @1 s (the target's size) | 1.2 ms / 34.5 ms |" in table
    assert "| start lateness p50 / p99 at 400 probes @1 s | 1.0 ms / 1.0 ms |" in table
