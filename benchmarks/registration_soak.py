"""Registration soak: N registration runs through the real runner against a sandbox.

Measures per-run duration, the daemon process's RSS after each run (the MLflow client lives in the
isolated subprocess, so it must stay flat), and, at the end, what is left in MLflow (via REST):
synthetic runs and model versions must be zero; an untagged "user" model registered first must be
untouched.

    .venv/bin/python benchmarks/registration_soak.py 20          # starts its own sandbox
    .venv/bin/python benchmarks/registration_soak.py 50 --ttl 1h

Prints a Markdown results table (copy it into benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client import CollectorRegistry

from monitor.app import build_daemon
from monitor.config import parse_config
from monitor.logs import make_logger
from probes.base import SystemClock
from probes.support.masking import SecretMasker
from sandbox import Sandbox

REPO = Path(__file__).resolve().parents[1]
TAG = "synthmon.synthetic"


def _tagged(tags: list[dict[str, str]]) -> bool:
    return any(t.get("key") == TAG and t.get("value") == "true" for t in tags)


async def run_registrations(daemon: Any, runs: int) -> tuple[list[float], list[float], dict[str, int]]:
    """Run ``runs`` registrations; per-run durations, RSS after each (MiB), and status counts."""
    process = psutil.Process(os.getpid())
    durations: list[float] = []
    rss_mb: list[float] = []
    statuses: dict[str, int] = {}
    for i in range(runs):
        result = (await daemon.run_once(["registration"]))[0]
        durations.append(result.duration_s)
        rss_mb.append(process.memory_info().rss / 2**20)
        statuses[result.status.value] = statuses.get(result.status.value, 0) + 1
        line = f"run {i + 1}/{runs}: {result.status.value} {result.duration_s:.1f}s rss {rss_mb[-1]:.1f} MiB"
        print(line, file=sys.stderr)
    return durations, rss_mb, statuses


def soak(box: Sandbox, runs: int, ttl: str, workdir: Path) -> None:
    """Run ``runs`` registrations through the daemon's runner and print the results table."""
    env = {**box.env(), "SYNTHMON_STORE_URL": f"sqlite:///{workdir}/soak.db"}
    text = (REPO / "config.yaml").read_text().replace("ttl: 1h", f"ttl: {ttl}")
    config = parse_config(text, source="config.yaml", env=env)
    masker = SecretMasker(config.secret_values())
    logger = make_logger(masker, json=True, level="error")
    daemon = build_daemon(
        config, registry=CollectorRegistry(), clock=SystemClock(), logger=logger, masker=masker
    )
    rest = httpx.Client(
        base_url=box.mlflow_tracking_uri + "/api/2.0/mlflow",
        headers={"Authorization": f"Bearer {box.keys.admin}"},
        timeout=30,
    )
    # A user's model, registered before the soak, without the synthetic tag.
    rest.post("/registered-models/create", json={"name": "user-model"})
    start = time.monotonic()
    durations, rss_mb, statuses = asyncio.run(run_registrations(daemon, runs))
    wall = time.monotonic() - start
    exp = rest.get("/experiments/get-by-name", params={"experiment_name": "synthmon-synthetic"}).json()
    search = {"experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 1000}
    found_runs = rest.post("/runs/search", json=search).json().get("runs", [])
    runs_left = [r for r in found_runs if _tagged(r["data"].get("tags", []))]
    versions = rest.get("/model-versions/search", params={"filter": "name='synthmon-synthetic'"}).json()
    versions_left = [v for v in versions.get("model_versions", []) if _tagged(v.get("tags", []))]
    user_ok = rest.get("/registered-models/get", params={"name": "user-model"}).status_code == 200
    ordered = sorted(durations)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    later = rss_mb[1:] or rss_mb
    print(f"\n| measurement (N={runs}, ttl {ttl}) | value |\n|---|---|")
    print(f"| statuses | {statuses} |")
    median = statistics.median(durations)
    print(f"| run duration median / p90 / max | {median:.1f} / {p90:.1f} / {max(durations):.1f} s |")
    print(f"| wall time for all runs | {wall:.0f} s |")
    print(f"| daemon RSS after run 1 / after run {runs} | {rss_mb[0]:.1f} / {rss_mb[-1]:.1f} MiB |")
    print(f"| daemon RSS spread over runs 2..N | {max(later) - min(later):.1f} MiB |")
    print(f"| synthetic runs / versions left | {len(runs_left)} / {len(versions_left)} |")
    print(f"| untagged user model intact | {user_ok} |")


def main() -> int:
    """Parse arguments, start a sandbox on free ports, run the soak, stop the sandbox."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=int, nargs="?", default=20)
    parser.add_argument("--ttl", default="1h", help="registration leftover TTL for the soak (default 1h)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synthmon-soak-") as tmp:
        workdir = Path(tmp)
        box = Sandbox(workdir / "sandbox", auth_port=0, registry_port=0)
        box.start(timeout_s=180)
        try:
            soak(box, args.runs, args.ttl, workdir)
        finally:
            box.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
