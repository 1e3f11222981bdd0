"""Two synthmon source trees side by side with blackbox_exporter, in one run, interleaved.

For a change to the daemon's hot path, the figures that matter are CPU per check and the
latency error, against blackbox_exporter on the same machine at the same moment. This runs,
with the helpers of :mod:`benchmarks.sidebyside` (nginx target, access-log truth):

- ``reps`` rounds of: tree A and tree B (order alternating) at ``n`` http probes at 1 s, then
  blackbox_exporter at ``n`` probes per second -> CPU ms per check, missed runs;
- the latency error (reported - nginx ``$request_time``) on ``/slow`` for A, B and the exporter;
- optionally (``--busy 200``) the same for A and B with that many ``/fast`` probes beside the
  ``/slow`` ones, an event loop busy when the answers arrive;
- optionally a ramp (``--ramp 200,250``): runs and missed runs at that many probes, per tree.

Each tree runs as ``synthmon`` with ``PYTHONPATH=<tree>``; compile both trees first
(``python -m compileall -q monitor probes``) so both measure what an installed synthmon does.
Usage: ``.venv/bin/python benchmarks/tree_ab.py /path/to/a /path/to/b [--reps 3] [--json out]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import sidebyside as sb


def _window(
    tree: Path,
    workdir: Path,
    target: sb.Target,
    n: int,
    path: str = "/fast",
    window_s: float = 20.0,
    busy: int = 0,
) -> tuple[sb.Window, sb.Synthmon]:
    """``synthmon_window`` with ``tree`` first on the daemon's import path."""
    os.environ["PYTHONPATH"] = str(tree)  # Synthmon passes the environment on to the daemon
    try:
        return sb.synthmon_window(workdir, target, n, 8.0, window_s, path=path, busy=busy)
    finally:
        os.environ.pop("PYTHONPATH", None)


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50": 1000 * sb.quantile(values, 0.5), "p99": 1000 * sb.quantile(values, 0.99), "n": len(values)}


def measure(
    trees: dict[str, Path], reps: int, n: int, ramp: list[int], workdir: Path, busy: int = 0
) -> dict[str, Any]:
    out: dict[str, Any] = {"cpu_ms": {k: [] for k in [*trees, "blackbox"]}, "missed": {k: [] for k in trees}}
    out["load"] = []
    target = sb.Target(workdir).start()
    try:
        for rep in range(reps):
            order = list(trees) if rep % 2 == 0 else list(reversed(trees))
            for name in order:
                w, daemon = _window(trees[name], workdir / f"cpu-{name}-{rep}", target, n)
                daemon.stop()
                out["cpu_ms"][name].append(w.cpu_ms_per_check)
                out["missed"][name].append(w.missed)
                out["load"].append(os.getloadavg()[0])
                sb.say(f"round {rep + 1}: {name} {w.cpu_ms_per_check:.2f} ms CPU/check, {w.missed} missed")
            b, _ = sb.blackbox_window(workdir / f"bb-{rep}", target, n, 20.0)
            out["cpu_ms"]["blackbox"].append(b.cpu_ms_per_check)
            out["load"].append(os.getloadavg()[0])
            sb.say(f"round {rep + 1}: blackbox_exporter {b.cpu_ms_per_check:.2f} ms CPU/check")
        for name, tree in trees.items():
            since = time.time()
            w, daemon = _window(tree, workdir / f"lat-{name}", target, 20, path="/slow")
            try:
                out[f"latency_err_{name}"] = _ms(sb.latency_errors_synthmon(daemon, target, 20, since))
            finally:
                daemon.stop()
            sb.say(f"latency error {name}: {out[f'latency_err_{name}']}")
        if busy:
            for name, tree in trees.items():
                since = time.time()
                w, daemon = _window(tree, workdir / f"latbusy-{name}", target, 20, path="/slow", busy=busy)
                try:
                    errors = sb.latency_errors_synthmon(daemon, target, 20, since)
                    out[f"latency_err_busy_{name}"] = _ms(errors)
                finally:
                    daemon.stop()
                sb.say(f"latency error {name} beside {busy} busy probes: {out[f'latency_err_busy_{name}']}")
        box = sb.Blackbox(workdir / "bb-lat").start()
        try:
            checks = sb.drive(box.port, target.url("/slow"), 20, 20.0)
        finally:
            box.stop()
        out["latency_err_blackbox"] = _ms(sb.latency_errors_blackbox(checks, target))
        sb.say(f"latency error blackbox_exporter: {out['latency_err_blackbox']}")
        for count in ramp:
            for name, tree in trees.items():
                w, daemon = _window(tree, workdir / f"ramp-{name}-{count}", target, count, window_s=15.0)
                daemon.stop()
                out[f"ramp_{name}_{count}"] = {
                    "runs": w.checks,
                    "missed": w.missed,
                    "cpu_pct": 100 * w.cpu_s / w.seconds,
                    "lateness_ms": _ms(w.lateness_s),
                }
                sb.say(f"ramp {count} {name}: {out[f'ramp_{name}_{count}']}")
    finally:
        target.stop()
    out["cpu_ms_median"] = {k: statistics.median(v) for k, v in out["cpu_ms"].items() if v}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("a", type=Path, help="first source tree (e.g. a checkout of main)")
    parser.add_argument("b", type=Path, help="second source tree")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--probes", type=int, default=50, help="http probes at 1 s in the CPU windows")
    parser.add_argument("--ramp", default="", help="comma-separated probe counts to try at 1 s")
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        help="also measure the latency error with this many /fast probes beside the /slow ones",
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    trees = {args.a.resolve().name: args.a.resolve(), args.b.resolve().name: args.b.resolve()}
    ramp = [int(x) for x in args.ramp.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="synthmon-ab-") as tmp:
        res = measure(trees, args.reps, args.probes, ramp, Path(tmp), args.busy)
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
