"""Incident evaluation through a platform-wide outage: does it keep up with the results?

N ``http`` probes at a 1 s interval all point at a closed loopback port, so every run FAILs at
once (connection refused) and every result needs an incident transition. The daemon is healthy
only if its incident sink evaluates results as fast as they come: otherwise its buffer fills, the
oldest results are dropped (``synthmon_incident_buffer_dropped_total``) and the recovery pages
late by as long as the backlog. Each source tree given runs in turn (``PYTHONPATH``), so the same
command A/Bs two checkouts in one run.

    .venv/bin/python benchmarks/outage.py                       # this tree, 250 probes, 90 s
    .venv/bin/python benchmarks/outage.py /tmp/main-before .    # two trees, one after the other
    .venv/bin/python benchmarks/outage.py --smoke               # seconds

Printed per tree: results made and evaluated per second, the incident buffer's largest depth,
results dropped, the daemon's CPU (children included) and missed runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sidebyside import Synthmon, free_port, say, tree_cpu_s

REPO = Path(__file__).resolve().parents[1]


def measure(tree: Path, workdir: Path, probes: int, seconds: float, every_s: float) -> dict[str, Any]:
    """One daemon of ``tree`` with ``probes`` failing probes for ``seconds``, sampled every ``every_s``."""
    port, closed = free_port(), free_port()
    urls = [f"http://127.0.0.1:{closed}/down?p={i:04d}" for i in range(probes)]
    daemon = Synthmon(workdir, Synthmon.http_config(port, workdir / "history.db", urls), port=port)
    daemon.env = {"PYTHONPATH": str(tree)}
    daemon.start()
    try:
        t0, c0 = time.monotonic(), tree_cpu_s(daemon.ps)
        depth_max, m = 0.0, daemon.metrics()
        deadline = t0 + seconds
        while time.monotonic() < deadline:
            time.sleep(min(every_s, max(0.0, deadline - time.monotonic())))
            m = daemon.metrics()
            depth = m.get("synthmon_incident_buffer_depth", 0.0)
            depth_max = max(depth_max, depth)
            say(f"{tree.name}: {time.monotonic() - t0:4.0f}s incident buffer {depth:.0f}")
        elapsed, cpu = time.monotonic() - t0, tree_cpu_s(daemon.ps) - c0
    finally:
        daemon.stop()
    runs = m.get("synthmon_probe_runs_total", 0.0)
    dropped = m.get("synthmon_incident_buffer_dropped_total", 0.0)
    waiting = m.get("synthmon_incident_buffer_depth", 0.0)
    return {
        "tree": str(tree),
        "results_per_s": runs / elapsed,
        "evaluated_per_s": (runs - dropped - waiting) / elapsed,
        "depth_max": depth_max,
        "dropped": dropped,
        "missed": m.get("synthmon_scheduler_missed_runs_total", 0.0),
        "cpu_pct": 100 * cpu / elapsed,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, help="source trees to run (default: this one)")
    parser.add_argument("--probes", type=int, default=250, help="failing probes at 1 s (default 250)")
    parser.add_argument("--seconds", type=float, default=90.0, help="how long each daemon runs (default 90)")
    parser.add_argument("--smoke", action="store_true", help="10 probes for 6 s: seconds, to keep it working")
    args = parser.parse_args(argv)
    probes, seconds = (10, 6.0) if args.smoke else (args.probes, args.seconds)
    trees = [t.resolve() for t in args.trees] or [REPO]
    rows = []
    with tempfile.TemporaryDirectory(prefix="synthmon-outage-") as tmp:
        for i, tree in enumerate(trees):
            rows.append(measure(tree, Path(tmp) / f"t{i}", probes, seconds, every_s=min(10.0, seconds / 3)))
    print(f"{probes} probes @1 s, every run failing, {seconds:g} s each\n")
    print("| tree | results/s | evaluated/s | incident buffer max | dropped | missed runs | CPU |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['tree']} | {r['results_per_s']:.0f} | {r['evaluated_per_s']:.0f} | {r['depth_max']:.0f}"
            f" | {r['dropped']:.0f} | {r['missed']:.0f} | {r['cpu_pct']:.0f} % |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
