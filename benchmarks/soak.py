"""Soak: ``synthmon run`` on the shipped probes at a 1 s interval against the sandbox, faults cycling.

The daemon runs the shipped ``config.yaml`` against a local sandbox (a real ``mlflow server``),
with every probe's interval shortened (default 1 s; a probe's run that would overlap its previous
one is skipped and counted as missed, as in production) while the sandbox's faults cycle: each
fault for ``--fault-s`` seconds, then as long healthy. Every ``--sample-s`` seconds it samples the
daemon's RSS, open file descriptors, threads, child processes (its own plus descendants: the
MLflow-client children), and from ``/metrics`` the outbox depth, history buffer depth, runs and
missed runs. The duration is bounded (``--minutes``, default 30).

By default the two checks that start a fresh Python interpreter with the MLflow client
(``mlflow_api``'s ``client_search`` and ``alb_health``'s ``mlflow_client``) are switched off and
``registration`` keeps its shipped 15 min interval: at 1 s they would be a CPU benchmark of
interpreter start-up rather than a soak of the daemon. ``--with-client-checks`` keeps them.

    .venv/bin/python benchmarks/soak.py --minutes 30
    .venv/bin/python benchmarks/soak.py --minutes 2 --sample-s 5     # a quick look

Prints a Markdown table (copy it into benchmarks/README.md); ``--csv PATH`` writes every sample.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
FAULTS = (
    "artifacts-404",
    "auth-down",
    "mlflow-slow",
    "registry-health-503",
    "strip-authorization",
    "mlflow-down",
    "rate-limited",
    "corrupt-artifact",
)


@dataclass
class Sample:
    """One look at the daemon."""

    t_s: float
    fault: str
    rss_mb: float
    tree_rss_mb: float
    fds: int
    threads: int
    children: int
    outbox: float
    history_buffer: float
    notified: float
    runs: float
    missed: float


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def soak_config(interval: str, with_client_checks: bool) -> str:
    """The shipped config with shortened intervals (and, by default, no fresh-interpreter checks)."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for probe in cfg["probes"]:
        if probe["kind"] == "registration" and not with_client_checks:
            continue
        probe["interval"] = interval
        probe["jitter"] = 0
        probe["allow_timeout_over_interval"] = True
        options = probe.setdefault("options", {})
        if not with_client_checks and probe["kind"] == "mlflow_api":
            options["client_search"] = False
        if not with_client_checks and probe["kind"] == "alb_health":
            options["checks"] = [c for c in options["checks"] if c.get("kind") != "mlflow_client"]
    return str(yaml.safe_dump(cfg, sort_keys=False))


def scrape(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


def sample(proc: psutil.Process, metrics_url: str, t_s: float, fault: str) -> Sample:
    kids = proc.children(recursive=True)
    tree = proc.memory_info().rss
    for kid in kids:
        with contextlib.suppress(psutil.Error):
            tree += kid.memory_info().rss
    m = scrape(metrics_url)
    return Sample(
        t_s=round(t_s, 1),
        fault=fault,
        rss_mb=round(proc.memory_info().rss / 2**20, 1),
        tree_rss_mb=round(tree / 2**20, 1),
        fds=proc.num_fds(),
        threads=proc.num_threads(),
        children=len(kids),
        outbox=m.get("synthmon_outbox_pending", 0.0),
        history_buffer=m.get("synthmon_history_buffer_depth", 0.0),
        notified=m.get("synthmon_notifications_total", 0.0),
        runs=m.get("synthmon_probe_runs_total", 0.0),
        missed=m.get("synthmon_scheduler_missed_runs_total", 0.0),
    )


def slope_per_hour(samples: list[Sample], attr: str) -> float:
    """Least-squares growth per hour of ``attr`` over the second half (after warm-up)."""
    half = samples[len(samples) // 2 :]
    if len(half) < 2:
        return float("nan")
    xs = [s.t_s / 3600 for s in half]
    ys = [float(getattr(s, attr)) for s in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


def render(samples: list[Sample], args: argparse.Namespace, cpu_pct: float) -> str:
    cols = ("rss_mb", "tree_rss_mb", "fds", "threads", "children", "outbox", "history_buffer")
    picks = sorted({0, len(samples) // 4, len(samples) // 2, 3 * len(samples) // 4, len(samples) - 1})
    head = "| t (min) | fault | " + " | ".join(cols) + " | notifications | runs | missed |\n"
    head += "|---" * (len(cols) + 5) + "|\n"
    rows = ""
    for i in picks:
        s = samples[i]
        vals = " | ".join(f"{getattr(s, c):g}" for c in cols)
        rows += (
            f"| {s.t_s / 60:.1f} | {s.fault or 'healthy'} | {vals} | {s.notified:.0f} | {s.runs:.0f}"
            f" | {s.missed:.0f} |\n"
        )
    rows += (
        "| max | | "
        + " | ".join(f"{max(float(getattr(s, c)) for s in samples):g}" for c in cols)
        + " | | | |\n"
    )
    rows += (
        "| growth per hour (2nd half) | | "
        + " | ".join(f"{slope_per_hour(samples, c):+.1f}" for c in cols)
        + " | | | |\n"
    )
    foot = (
        f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.minutes:g} min, probes every"
        f" {args.interval}, faults {args.fault_s:g} s on / {args.fault_s:g} s off in turn, client checks"
        f" {'on' if args.with_client_checks else 'off'};"
        f" daemon CPU (children included) {cpu_pct:.1f} % of a core;"
        f" `nproc` {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at the end.\n"
    )
    return head + rows + foot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to soak (default 30)")
    parser.add_argument("--interval", default="1s", help="probe interval (default 1s)")
    parser.add_argument("--sample-s", type=float, default=15.0, help="seconds between samples (default 15)")
    parser.add_argument("--fault-s", type=float, default=60.0, help="seconds each fault is on, then off")
    parser.add_argument("--with-client-checks", action="store_true", help="keep the MLflow-client checks")
    parser.add_argument("--csv", type=Path, help="write every sample here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)

    from sandbox import Sandbox

    work = Path(tempfile.mkdtemp(prefix="synthmon-soak-"))
    samples: list[Sample] = []
    try:
        say("starting the sandbox")
        with Sandbox(work / "sandbox", auth_port=0, registry_port=0) as box:
            port = free_port()
            env = {
                **os.environ,
                **box.env(),
                "SYNTHMON_LISTEN": f"127.0.0.1:{port}",
                "SYNTHMON_STORE_URL": f"sqlite:///{work / 'soak.db'}",
                "SLACK_WEBHOOK_URL": "",
                "SLACK_BOT_TOKEN": "",
            }
            cfg = work / "config.yaml"
            cfg.write_text(soak_config(args.interval, args.with_client_checks))
            synthmon = Path(sys.executable).with_name("synthmon")
            with (work / "synthmon.log").open("ab") as log:
                daemon = subprocess.Popen(
                    [str(synthmon), "run", "--config", str(cfg), "--log-format", "json"],
                    stdout=log,
                    stderr=log,
                    env=env,
                    start_new_session=True,
                )
            try:
                metrics_url = f"http://127.0.0.1:{port}/metrics"
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    with contextlib.suppress(httpx.HTTPError):
                        if httpx.get(metrics_url, timeout=2).status_code == 200:
                            break
                    if daemon.poll() is not None:
                        raise RuntimeError(
                            f"synthmon exited {daemon.returncode}; see {work / 'synthmon.log'}"
                        )
                    time.sleep(0.2)
                proc = psutil.Process(daemon.pid)
                t0 = time.monotonic()
                end = t0 + args.minutes * 60
                c0 = proc.cpu_times()
                cycle, fault, next_switch, n = 0, "", t0 + args.fault_s, 0
                say(f"soaking {args.minutes:g} min; daemon pid {daemon.pid}")
                while (now := time.monotonic()) < end and n < 100_000:
                    n += 1
                    if now >= next_switch:
                        if fault:
                            box.clear_faults()
                            fault = ""
                        else:
                            fault = FAULTS[cycle % len(FAULTS)]
                            cycle += 1
                            box.set_faults(fault)
                        next_switch = now + args.fault_s
                    samples.append(sample(proc, metrics_url, now - t0, fault))
                    s = samples[-1]
                    say(
                        f"{s.t_s:6.0f}s {fault or 'healthy':20} rss {s.rss_mb} MB"
                        f" fds {s.fds} threads {s.threads}"
                    )
                    time.sleep(max(0.0, min(args.sample_s, end - time.monotonic())))
                c1 = proc.cpu_times()
                cpu = (c1.user + c1.system + c1.children_user + c1.children_system) - (
                    c0.user + c0.system + c0.children_user + c0.children_system
                )
                cpu_pct = 100 * cpu / (time.monotonic() - t0)
            finally:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait(5)
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.csv:
        with args.csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(asdict(samples[0])))
            writer.writeheader()
            writer.writerows(asdict(s) for s in samples)
    print(render(samples, args, cpu_pct))
    return 0


if __name__ == "__main__":
    sys.exit(main())
