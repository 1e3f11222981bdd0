"""synthmon and prometheus-blackbox-exporter side by side, in one run, against one loopback nginx.

Everything runs on 127.0.0.1 on free ports, in a temporary directory:

- **target**: nginx (its own prefix and config) with ``/fast`` (answered by nginx at once) and
  ``/slow`` (proxied to a tiny asyncio upstream that holds every answer 200 ms). The **true
  latency** of each request is what nginx itself measured, ``$request_time`` in its access log
  (first request byte read to last answer byte sent, 1 ms resolution); every check carries an id in
  its query string, so each monitor's reported latency is matched to nginx's figure for the very
  same request.
- **synthmon**: ``synthmon run`` on a generated config of N ``http`` probes at a 1 s interval, with
  a temporary SQLite store. Checks and missed runs come from its ``/metrics``; run start times
  and reported latencies from its ``/api/v1/runs``.
- **blackbox_exporter**: the Debian ``prometheus-blackbox-exporter`` binary, driven by a small
  bounded driver in this process that makes N ``/probe`` calls per second, spread evenly over
  each second (what Prometheus does with N targets at a 1 s scrape interval). blackbox_exporter
  opens a fresh connection to the target per check, and so does synthmon.

CPU is the process tree's user+system time (psutil, children included) over a measuring window,
divided by the checks done in it; the driver's own CPU is not charged to blackbox_exporter, as
Prometheus's scraping is not. Figures that are medians of repeated windows say so.

The history part generates 30 days and 1 year of runs (5 probes at 1 min) through the store's own
code, caches the databases under ``var/bench/`` (keyed by the schema revision) and times the
whole-process ``synthmon uptime`` / ``synthmon history`` and the daemon's ``GET /api/v1/status``.

    .venv/bin/python benchmarks/sidebyside.py            # the full run, ~20 min on 2 cores
    .venv/bin/python benchmarks/sidebyside.py --smoke    # seconds: every part once, tiny sizes

Progress goes to stderr, the results table (Markdown) to stdout; ``--json PATH`` also writes the
raw figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / "var" / "bench"
HOLD_S = 0.2
_T0 = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr (stdout carries only the results)."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def monitor_internals() -> SimpleNamespace:
    """Every synthmon-internal name the harness uses, imported in this one place.

    Only the history generator needs them (it writes through the store's own code and schema);
    when those modules move, this function is the one line to change.
    """
    from monitor.history.sqlstore import SqlHistoryStore
    from monitor.results import ProbeResult
    from monitor.store import migrate, schema
    from monitor.store.database import Database
    from probes.base import HttpTiming, Status, StepResult

    @contextlib.contextmanager
    def open_history(url: str, **retention: int) -> Iterator[SqlHistoryStore]:
        """The history store on a migrated database at ``url``, closed afterwards."""
        db = Database.open(url)
        try:
            yield SqlHistoryStore(db, **retention)
        finally:
            db.close()

    return SimpleNamespace(
        open_history=open_history,
        head_revision=migrate.head_revision,
        schema=schema,
        ProbeResult=ProbeResult,
        StepResult=StepResult,
        Status=Status,
        HttpTiming=HttpTiming,
    )


# ---- small helpers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until true; raise naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready within {timeout_s:g}s")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def tree_cpu_s(proc: psutil.Process) -> float:
    """User+system CPU seconds of ``proc`` and its live descendants, each with its reaped children.

    A descendant's reaped children matter: the isolated children forked by the daemon's zygote are
    reaped by the zygote, so their CPU is in its ``children_*`` times, not the daemon's.
    """
    total = 0.0
    for member in (proc, *proc.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            t = member.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def zygote_of(proc: psutil.Process) -> psutil.Process | None:
    """The daemon's zygote (the helper its isolated children are forked from), if it runs one."""
    for child in proc.children():
        with contextlib.suppress(psutil.Error):
            if "probes.support.zygote" in child.cmdline():
                return child
    return None


def client_check_cpu_s(env: dict[str, str], reps: int) -> dict[str, Any]:
    """CPU-seconds of one MLflow client check (``search_experiments`` against the sandbox), median of
    ``reps``: in a fresh interpreter, and forked from a zygote (plus the zygote's one-off start)."""
    import resource

    from probes.support.isolation import run_isolated

    target = "probes.support.mlflow_child:search_experiments"
    payload = {
        "tracking_uri": env["REGISTRY_URL"].rstrip("/") + "/api/mlflow",
        "api_key": env["SYNTHMON_API_KEY"],
        "step": "client_search",
        "request_timeout_s": 20,
    }

    def reaped_s() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def zygote_s(z: psutil.Process) -> float:
        t = z.cpu_times()
        return float(t.user + t.system + t.children_user + t.children_system)

    async def measure_all() -> dict[str, Any]:
        fresh = []
        for _ in range(reps):
            c0 = reaped_s()
            answer = await run_isolated(target, payload, 60)
            fresh.append(reaped_s() - c0)
            assert answer.value["status"] == "PASS", answer.value
        out: dict[str, Any] = {"fresh_s": statistics.median(fresh), "reps": reps}
        try:
            from probes.support.zygote import Zygote
        except ImportError:  # a tree without a zygote
            return out
        import structlog

        # Its log lines go to stderr with the progress: stdout carries only the results.
        zygote = Zygote(logger=structlog.wrap_logger(structlog.PrintLogger(sys.stderr)))
        try:
            await run_isolated(target, payload, 120, zygote=zygote)  # starts the zygote
            assert zygote.pid is not None
            proc = psutil.Process(zygote.pid)
            out["zygote_start_s"] = proc.cpu_times().user + proc.cpu_times().system
            forked = []
            for _ in range(reps):
                c0 = zygote_s(proc)
                answer = await run_isolated(target, payload, 60, zygote=zygote)
                forked.append(zygote_s(proc) - c0)
                assert answer.value["status"] == "PASS", answer.value
            out["forked_s"] = statistics.median(forked)
            out["zygote_rss_mb"] = rss_mb(proc)
        finally:
            await zygote.close()
        return out

    return asyncio.run(measure_all())


def rss_mb(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss) / 2**20


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL the process group."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def synthmon_cmd() -> list[str]:
    script = Path(sys.executable).with_name("synthmon")
    return [str(script)] if script.exists() else [sys.executable, "-m", "monitor"]


def scrape(url: str) -> dict[str, float]:
    """Sum of each sample name over its label sets, from a Prometheus text page."""
    text = httpx.get(url, timeout=60).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


# ---- the target: nginx and its 200 ms upstream -------------------------------------------------------


async def _upstream_main(port: int, hold_s: float) -> None:
    """A minimal HTTP server that answers every request after exactly ``hold_s`` (then closes)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(hold_s)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n")
            writer.write(b"Connection: close\r\n\r\nok\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  log_format timing '$msec $request_time $status $request_uri';
  access_log {prefix}/access.log timing;
  client_body_temp_path {prefix}/tmp/body;
  proxy_temp_path {prefix}/tmp/proxy;
  fastcgi_temp_path {prefix}/tmp/fastcgi;
  uwsgi_temp_path {prefix}/tmp/uwsgi;
  scgi_temp_path {prefix}/tmp/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /fast {{ default_type text/plain; return 200 "ok\\n"; }}
    location = /slow {{ proxy_pass http://127.0.0.1:{upstream}; }}
  }}
}}
"""


@dataclass
class Target:
    """nginx on a free port with ``/fast`` and ``/slow``; its access log gives the true latencies."""

    workdir: Path
    port: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> Target:
        prefix = self.workdir / "nginx"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        upstream = free_port()
        self.port = free_port()
        self.procs.append(
            subprocess.Popen(
                [sys.executable, str(Path(__file__)), "--upstream", str(upstream)],
                start_new_session=True,
            )
        )
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, port=self.port, upstream=upstream))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.procs.append(
            subprocess.Popen(
                [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                start_new_session=True,
            )
        )
        wait_until(lambda: port_open(upstream) and port_open(self.port), 15, "nginx and its upstream")
        wait_until(lambda: httpx.get(self.url("/slow")).status_code == 200, 15, "nginx /slow")
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def true_latencies(self) -> dict[str, list[tuple[float, float]]]:
        """Request URI -> [(start epoch, nginx $request_time)] from the access log."""
        out: dict[str, list[tuple[float, float]]] = {}
        log = self.workdir / "nginx" / "access.log"
        for line in log.read_text().splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4 and parts[2] == "200":
                end, took = float(parts[0]), float(parts[1])
                out.setdefault(parts[3], []).append((end - took, took))
        return out

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc, 10)


# ---- synthmon -------------------------------------------------------------------------------------


@dataclass
class Synthmon:
    """One ``synthmon run`` with its own config, store and log file."""

    workdir: Path
    config_text: str
    env: dict[str, str] | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def http_config(listen: int, store: Path, urls: Sequence[str], interval: str = "1s") -> str:
        lines = [
            "environment: bench",
            f"listen: 127.0.0.1:{listen}",
            f"store: {{url: 'sqlite:///{store}'}}",
            "probes:",
        ]
        for i, url in enumerate(urls):
            lines += [
                f"  - name: p{i:04d}",
                "    kind: http",
                f"    interval: {interval}",
                f"    timeout: {interval}",
                f"    options: {{url: '{url}'}}",
            ]
        return "\n".join(lines) + "\n"

    def start(self, ready_timeout_s: float = 60.0) -> Synthmon:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "config.yaml"
        cfg.write_text(self.config_text)
        log = (self.workdir / "synthmon.log").open("ab")
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(
            [*synthmon_cmd(), "run", "--config", str(cfg), "--log-format", "json"],
            stdout=log,
            stderr=log,
            env=env,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        wait_until(self._healthy, ready_timeout_s, f"synthmon (log: {self.workdir / 'synthmon.log'})")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"synthmon exited {self.proc.returncode}; see {self.workdir / 'synthmon.log'}")
        return httpx.get(self.url("/healthz"), timeout=2).status_code == 200

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def ps(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def metrics(self) -> dict[str, float]:
        return scrape(self.url("/metrics"))

    def runs(self, probe: str, since_s: float) -> list[dict[str, Any]]:
        # A daemon at the edge of its capacity answers slowly: a read that times out here would
        # lose the whole run's figures, so it is given far longer than any check takes.
        answer = httpx.get(
            self.url("/api/v1/runs"),
            params={"probe": probe, "since": f"{since_s:.0f}s", "limit": "1000"},
            timeout=60,
        )
        answer.raise_for_status()
        runs: list[dict[str, Any]] = answer.json()["runs"]
        return runs

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def lateness_s(starts: Sequence[Sequence[float]], interval_s: float) -> list[float]:
    """Start lateness of every run, from run start times per probe (in config order).

    The daemon does not expose scheduled times, but it schedules probe i of n on a grid
    ``t0 + i/n * interval + k * interval`` (first runs staggered evenly within one interval, then
    a strict interval). Each start's phase on that grid is found; the on-time runs are the densest
    10 ms bin of phases, and since no run starts early, the earliest phase near that bin is taken
    as ``t0``. So each figure is lateness beyond the least-late run of the window (a delay common
    to every run is not seen); a run more than 0.9 interval late would wrap round, but the daemon
    skips those as missed (its misfire grace is one interval).
    """
    n = len(starts)
    if not n or not any(starts):
        return []
    base = min(s[0] for s in starts if s)
    phases = [((s - base) / interval_s - i / n) % 1.0 for i, probe in enumerate(starts) for s in probe]
    bins = [0] * 100
    for p in phases:
        bins[int(p * 100) % 100] += 1
    peak = (bins.index(max(bins)) + 0.5) / 100
    relative = [(p - peak + 0.1) % 1.0 - 0.1 for p in phases]
    floor = min(relative)
    return [(r - floor) * interval_s for r in relative]


# ---- blackbox_exporter ---------------------------------------------------------------------------------

BLACKBOX_CONF = """\
modules:
  http_bench:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      valid_status_codes: [200]
"""


@dataclass
class Blackbox:
    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Blackbox:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "blackbox.yml"
        cfg.write_text(BLACKBOX_CONF)
        self.port = free_port()
        binary = shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")
        assert binary, "prometheus-blackbox-exporter is not installed"
        log = (self.workdir / "blackbox.log").open("ab")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={cfg}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        wait_until(lambda: port_open(self.port), 15, "blackbox_exporter")
        return self

    @property
    def ps(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@dataclass
class Check:
    """One ``/probe`` call of the driver."""

    key: str
    scheduled: float
    started: float = 0.0
    ok: bool = False
    reported_s: float = float("nan")


async def _keepalive_get(conn: list[Any], port: int, path: str, timeout_s: float) -> tuple[int, bytes]:
    """GET over a reused HTTP/1.1 connection (opened on demand), as Prometheus scrapes."""
    if not conn:
        conn.extend(await asyncio.open_connection("127.0.0.1", port))
    reader, writer = conn
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
    status = int(head.split(b" ", 2)[1])
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:  # Go's server chunks answers past its 4 KiB buffer
        chunks = []
        while size := int((await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout_s)).strip(), 16):
            chunks.append(await asyncio.wait_for(reader.readexactly(size + 2), timeout_s))
        await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout_s)
        return status, b"".join(c[:-2] for c in chunks)
    length = 0
    for line in headers.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await asyncio.wait_for(reader.readexactly(length), timeout_s)
    return status, body


def _probe_value(body: bytes, name: bytes) -> float | None:
    for line in body.split(b"\n"):
        if line.startswith(name + b" "):
            return float(line.split(b" ")[1])
    return None


async def _drive(port: int, target_url: str, rate: float, seconds: float) -> list[Check]:
    """``rate`` /probe calls per second for ``seconds``, each at its slot; bounded in count and time."""
    total = max(1, int(rate * seconds))
    checks: list[Check] = []
    queue: asyncio.Queue[Check | None] = asyncio.Queue()
    workers = min(512, max(8, int(rate * 0.3) + 8))
    t0 = time.time() + 0.2

    async def produce() -> None:
        for i in range(total):
            scheduled = t0 + i / rate
            delay = scheduled - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            key = f"{uuid.uuid4().hex[:12]}"
            check = Check(key=key, scheduled=scheduled)
            checks.append(check)
            queue.put_nowait(check)
        for _ in range(workers):
            queue.put_nowait(None)

    async def work() -> None:
        conn: list[Any] = []
        while (check := await queue.get()) is not None:
            check.started = time.time()
            sep = "&" if "?" in target_url else "?"
            target = urllib.parse.quote(f"{target_url}{sep}id={check.key}", safe="")
            try:
                status, body = await _keepalive_get(
                    conn, port, f"/probe?module=http_bench&target={target}", 10
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                if conn:
                    conn[1].close()
                conn.clear()
                continue
            check.ok = status == 200 and _probe_value(body, b"probe_success") == 1.0
            check.reported_s = _probe_value(body, b"probe_duration_seconds") or float("nan")
        if conn:
            conn[1].close()

    await asyncio.wait_for(asyncio.gather(produce(), *(work() for _ in range(workers))), seconds + 60)
    return checks


def drive(port: int, target_url: str, rate: float, seconds: float) -> list[Check]:
    return asyncio.run(_drive(port, target_url, rate, seconds))


# ---- measurements -----------------------------------------------------------------------------------


@dataclass
class Window:
    """What one measuring window of one monitor saw."""

    checks: int
    cpu_s: float
    rss_mb: float
    missed: int = 0
    seconds: float = 0.0
    lateness_s: list[float] = field(default_factory=list)
    driver_cpu_s: float = 0.0
    #: Runs that started inside the window by their own stored start times (synthmon, when read).
    #: ``checks`` comes from two scrapes, and a scrape at hundreds of probes takes most of a second
    #: of its own (rendered in slices between probe runs), so its counters are read at some unknown
    #: moment of it: at 250 probes that is an error of up to a hundred runs either way.
    started: int = 0

    @property
    def cpu_ms_per_check(self) -> float:
        return 1000 * self.cpu_s / self.checks if self.checks else float("nan")


def synthmon_window(
    workdir: Path,
    target: Target,
    n: int,
    warm_s: float,
    window_s: float,
    path: str = "/fast",
    busy: int = 0,
) -> tuple[Window, Synthmon]:
    """Start synthmon with ``n`` probes, let it settle, measure a window; the daemon is left running.

    ``busy`` more probes on ``/fast`` run beside them (named after them) to keep the event loop
    busy; the window's runs and missed runs count them, its start lateness does not.
    """
    port = free_port()
    urls = [target.url(f"{path}?p={i:04d}") for i in range(n)]
    urls += [target.url(f"/fast?p={i:04d}") for i in range(n, n + busy)]
    daemon = Synthmon(workdir, Synthmon.http_config(port, workdir / "history.db", urls), port=port).start()
    time.sleep(warm_s)  # the settle period itself (not waiting for a state: nothing to poll for)
    m0, c0, t0 = daemon.metrics(), tree_cpu_s(daemon.ps), time.time()
    time.sleep(window_s)
    m1, c1, t1 = daemon.metrics(), tree_cpu_s(daemon.ps), time.time()
    runs = int(m1.get("synthmon_probe_runs_total", 0) - m0.get("synthmon_probe_runs_total", 0))
    missed = int(
        m1.get("synthmon_scheduler_missed_runs_total", 0) - m0.get("synthmon_scheduler_missed_runs_total", 0)
    )
    starts: list[list[float]] = []
    # A window with missed runs is past the daemon's capacity: its lateness is not reported, and
    # reading every probe's runs back from a daemon that busy could take most of an hour.
    for i in range(n if not missed else 0):
        got = daemon.runs(f"p{i:04d}", time.time() - t0 + 2)
        starts.append(
            sorted(t for r in got if t0 <= (t := datetime.fromisoformat(r["started_at"]).timestamp()) < t1)
        )
    window = Window(
        checks=runs,
        cpu_s=c1 - c0,
        rss_mb=rss_mb(daemon.ps),
        missed=missed,
        seconds=t1 - t0,
        lateness_s=lateness_s(starts, 1.0),
        started=sum(len(s) for s in starts),
    )
    return window, daemon


def blackbox_window(
    workdir: Path, target: Target, rate: float, window_s: float
) -> tuple[Window, list[Check]]:
    box = Blackbox(workdir).start()
    try:
        drive(box.port, target.url("/fast"), min(rate, 20), 1.0)  # warm the exporter
        me = psutil.Process()
        c0, d0 = tree_cpu_s(box.ps), me.cpu_times()
        t0 = time.time()
        checks = drive(box.port, target.url("/fast"), rate, window_s)
        c1, d1 = tree_cpu_s(box.ps), me.cpu_times()
        missed = sum(1 for c in checks if not c.ok or c.started - c.scheduled > 1.0)
        window = Window(
            checks=sum(1 for c in checks if c.ok),
            cpu_s=c1 - c0,
            rss_mb=rss_mb(box.ps),
            missed=missed,
            seconds=time.time() - t0,
            driver_cpu_s=(d1.user + d1.system) - (d0.user + d0.system),
        )
        return window, checks
    finally:
        box.stop()


def latency_errors_synthmon(daemon: Synthmon, target: Target, n: int, since: float) -> list[float]:
    """Reported (the ``request`` step's duration) minus nginx's ``$request_time`` for the same request."""
    truth = target.true_latencies()
    errors: list[float] = []
    for i in range(n):
        seen = sorted(truth.get(f"/slow?p={i:04d}", []))
        for run in daemon.runs(f"p{i:04d}", time.time() - since + 2):
            started = datetime.fromisoformat(run["started_at"]).timestamp()
            step = run["steps"][0]
            if run["status"] != "PASS" or started < since:
                continue
            # The request nginx saw first after the run started (its start is at or after ours).
            match = [t for s, t in seen if started - 0.005 <= s <= started + 0.5]
            if match:
                errors.append(float(step["duration_s"]) - match[0])
    return errors


def latency_errors_blackbox(checks: Sequence[Check], target: Target) -> list[float]:
    truth = target.true_latencies()
    errors = []
    for c in checks:
        seen = truth.get(f"/slow?id={c.key}")
        if c.ok and seen:
            errors.append(c.reported_s - seen[0][1])
    return errors


def whole_process_s(argv: Sequence[str], reps: int, env: dict[str, str] | None = None) -> list[float]:
    """Wall time of ``argv`` run to completion ``reps`` times (output discarded, exit code checked)."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=env, timeout=300)
        times.append(time.perf_counter() - t)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return times


# ---- history: generated through the store's own code ------------------------------------------------

#: The shipped probes and their steps (alb_health over http: ten checks and its summary).
SHIPPED_STEPS = {
    "auth": ["health", "ready", "validate", "rejects_invalid_key"],
    "alb_health": [
        "auth_health",
        "auth_root",
        "auth_validate",
        "registry_health",
        "registry_api_health",
        "mlflow_ui",
        "mlflow_api_proxy",
        "isolation_registry_has_no_auth_api",
        "isolation_auth_has_no_mlflow",
        "mlflow_client",
        "summary",
    ],
    "mlflow_api": ["experiments_search", "registered_models_search", "experiment", "client_search"],
    "artifact_roundtrip": ["upload", "list", "download", "verify", "delete"],
    "registration": [
        "set_experiment",
        "train",
        "log_model",
        "register",
        "wait_ready",
        "load",
        "predict",
        "cleanup",
    ],
}


#: Bumped when the generated runs change shape (a cached database of another shape is not reused).
GENERATOR = "g3"


def _synthetic_runs(mi: SimpleNamespace, start: float, end: float, rng: random.Random) -> list[Any]:
    """One run per shipped probe per minute in [start, end), shaped like real ones (about 1 in 200
    fails at a step with a diagnosis-sized message and body excerpt)."""
    results = []
    minute = -int(-start // 60) * 60  # the first whole minute at or after start
    while minute < end:
        for probe, names in SHIPPED_STEPS.items():
            fail_at = rng.randrange(len(names)) if rng.random() < 0.005 else -1
            steps = []
            for i, name in enumerate(names):
                took = rng.uniform(0.005, 0.3)
                if fail_at == i:
                    status, extra = (
                        mi.Status.FAIL,
                        {
                            "http_status": 404,
                            "error_class": "http_status",
                            "message": f"GET /api/mlflow/{name} answered 404, expected 200",
                            "path": f"/api/mlflow/{name}",
                            "body_excerpt": '{"detail":"Not Found"}',
                        },
                    )
                elif fail_at != -1 and i > fail_at:
                    status, extra = mi.Status.SKIPPED, {"message": f"skipped: {names[fail_at]} failed"}
                    took = 0.0
                else:
                    status, extra = (
                        mi.Status.PASS,
                        {
                            "http_status": 200,
                            "path": f"/{name}",
                            "message": f"GET /{name} answered 200",
                            "content_type": "application/json",
                        },
                    )
                timing = mi.HttpTiming(connect_s=0.001, ttfb_s=took * 0.9, total_s=took) if took else None
                steps.append(mi.StepResult(name=name, status=status, duration_s=took, timing=timing, **extra))
            results.append(
                mi.ProbeResult(
                    probe=probe,
                    kind=probe,
                    run_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                    started_at=datetime.fromtimestamp(minute + 0.0, UTC),
                    duration_s=sum(s.duration_s for s in steps),
                    status=mi.ProbeResult.status_of(steps),
                    steps=tuple(steps),
                    environment="bench",
                )
            )
        minute += 60
    return results


def _append(store: Any, results: Sequence[Any], batch: int = 2000) -> None:
    for i in range(0, len(results), batch):
        store.append_runs(results[i : i + batch])


def _replicate_days(db: Path, days: int) -> None:
    """Copy the first stored day forward ``days - 1`` times (runs, steps, rollups), in bulk SQL.

    The first day was written through ``SqlHistoryStore.append_runs``; each copy keeps its rows (the
    packed steps as they are), with the run id's tail, the start times and the rollup hour moved on.
    """
    import sqlite3

    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous=OFF")  # a generated file: a crash means generating it again
    try:
        (last,) = con.execute("SELECT max(id) FROM runs").fetchone()
        (last_step,) = con.execute("SELECT max(id) FROM steps").fetchone()
        for d in range(1, days):
            shift = d * 86400
            con.execute(
                "INSERT INTO runs (id, run_id, probe, kind, environment, started_at, duration_s, status,"
                " failing_step, detail)"
                " SELECT id + :base, substr(run_id, 1, 26) || printf('%06d', :d), probe, kind,"
                " environment, started_at + :shift, duration_s, status, failing_step, detail"
                " FROM runs WHERE id <= :last ORDER BY id",
                {"d": d, "base": d * last, "shift": shift, "last": last},
            )
            con.execute(
                "INSERT INTO steps (id, run_pk, probe, seq, name, status, duration_s, http_status,"
                " error_class, started_at)"
                " SELECT id + :sbase, run_pk + :base, probe, seq, name, status, duration_s, http_status,"
                " error_class, started_at + :shift FROM steps WHERE id <= :last ORDER BY id",
                {"sbase": d * last_step, "base": d * last, "shift": shift, "last": last_step},
            )
            con.execute(
                "INSERT INTO rollups (probe, step, hour, runs, failures, errors, degraded, duration_sum,"
                " duration_max) SELECT probe, step, hour + :shift, runs, failures, errors, degraded,"
                " duration_sum, duration_max FROM rollups"
                " WHERE hour < (SELECT min(hour) FROM rollups) + 86400",
                {"shift": shift},
            )
            con.commit()
            if d % 30 == 0:
                say(f"  history: {d}/{days} days")
    finally:
        con.close()


def history_db(days: int, *, cache: bool) -> Path:
    """A SQLite store holding ``days`` days of 5 probes at 1 min, ending now.

    Cached under var/bench/ by schema revision; a cached one is topped up to now through
    ``append_runs`` when it is less than two days old, else generated again.
    """
    mi = monitor_internals()
    revision = mi.head_revision()
    workdir = CACHE_DIR if cache else Path(tempfile.mkdtemp(prefix="synthmon-bench-history-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / f"history-{revision}-{GENERATOR}-{days}d.sqlite"
    meta = db.with_suffix(".json")
    now = time.time()
    rng = random.Random(now)  # fresh run ids for every top-up
    if db.exists() and meta.exists():
        end = float(json.loads(meta.read_text())["end"])
        if now - end < 2 * 86400:
            with mi.open_history(
                f"sqlite:///{db}", retention_days=days + 1, rollup_retention_days=days + 40
            ) as store:
                _append(store, _synthetic_runs(mi, end, now, rng))
            meta.write_text(json.dumps({"end": now}))
            say(f"history: reusing {db.name} (topped up {now - end:.0f}s)")
            return db
    say(f"history: generating {days} days into {db}")
    partial = db.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    # Hour-aligned, so that each copied day's rollup hours meet the next without overlapping.
    start = (now - days * 86400) // 3600 * 3600
    with mi.open_history(
        f"sqlite:///{partial}", retention_days=days + 1, rollup_retention_days=days + 40
    ) as store:
        _append(store, _synthetic_runs(mi, start, start + 86400, rng))
    _replicate_days(partial, days)
    for leftover in partial.parent.glob(partial.name + "-*"):
        leftover.rename(db.parent / leftover.name.replace(partial.name, db.name))
    partial.rename(db)
    meta.write_text(json.dumps({"end": start + days * 86400}))
    if cache:
        return history_db(days, cache=cache)  # top up the last minutes through the store's code
    return db


def history_figures(days: int, *, cache: bool, reps: int, api_reps: int) -> dict[str, Any]:
    """DB size, bytes per run, whole-process uptime/history, /api/v1/status and the page, p50/p95."""
    import sqlite3

    db = history_db(days, cache=cache)
    with contextlib.closing(sqlite3.connect(db)) as con:
        (runs,) = con.execute("SELECT count(*) FROM runs").fetchone()
    size = db.stat().st_size + sum(p.stat().st_size for p in db.parent.glob(db.name + "-*"))
    work = Path(tempfile.mkdtemp(prefix="synthmon-bench-q-"))
    port = free_port()
    cfg_text = (
        f"environment: bench\nlisten: 127.0.0.1:{port}\n"
        f"store: {{url: 'sqlite:///{db}', retention_days: {days + 1}, rollup_retention_days: {days + 40}}}\n"
        "probes:\n"
        + "".join(
            f"  - {{name: {p}, kind: http, enabled: false, options: {{url: 'http://127.0.0.1:9/'}}}}\n"
            for p in SHIPPED_STEPS
        )
    )
    cfg = work / "config.yaml"
    cfg.write_text(cfg_text)
    out: dict[str, Any] = {"days": days, "runs": runs, "db_bytes": size, "bytes_per_run": size / max(1, runs)}
    say(f"history {days}d: {runs} runs, {size / 2**20:.0f} MiB; timing commands")
    out["uptime_s"] = whole_process_s([*synthmon_cmd(), "uptime", "--config", str(cfg)], reps)
    out["history_s"] = whole_process_s(
        [*synthmon_cmd(), "history", "--probe", "auth", "--config", str(cfg)], reps
    )
    daemon = Synthmon(work / "daemon", cfg_text, port=port).start(ready_timeout_s=120)
    try:
        with httpx.Client(timeout=30) as client:
            for name, path in (("status_api_s", "/api/v1/status"), ("status_page_s", "/")):
                times = []
                for _ in range(api_reps):
                    t = time.perf_counter()
                    client.get(daemon.url(path)).raise_for_status()
                    times.append(time.perf_counter() - t)
                out[name] = times
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
        if not cache:
            shutil.rmtree(db.parent, ignore_errors=True)
    return out


# ---- the shipped config against the sandbox ------------------------------------------------------------


def shipped_figures(workdir: Path, minutes: float) -> dict[str, Any]:
    """Idle RSS and steady CPU (children included) of ``config.yaml`` against a healthy sandbox."""
    from sandbox import Sandbox

    say("shipped config: starting the sandbox (real mlflow server)")
    with Sandbox(workdir / "sandbox", auth_port=0, registry_port=0) as box:
        port = free_port()
        env = {
            **box.env(),
            "SYNTHMON_LISTEN": f"127.0.0.1:{port}",
            "SYNTHMON_STORE_URL": f"sqlite:///{workdir / 'shipped.db'}",
        }
        for var in ("SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN", "SLACK_CHANNEL", "SLACK_API_URL"):
            env[var] = ""
        text = (REPO / "config.yaml").read_text()
        daemon = Synthmon(workdir / "shipped", text, env=env, port=port).start(ready_timeout_s=120)
        try:
            settle = min(60.0, minutes * 60 / 3)
            say(f"shipped config: settling {settle:.0f}s, then measuring {minutes * 60 - settle:.0f}s")
            time.sleep(settle)
            c0, t0, m0 = tree_cpu_s(daemon.ps), time.monotonic(), daemon.metrics()
            time.sleep(minutes * 60 - settle)
            c1, t1, m1 = tree_cpu_s(daemon.ps), time.monotonic(), daemon.metrics()
            runs = m1.get("synthmon_probe_runs_total", 0) - m0.get("synthmon_probe_runs_total", 0)
            zygote = zygote_of(daemon.ps)
            out = {
                "zygote_rss_mb": rss_mb(zygote) if zygote is not None else None,
                "rss_mb": rss_mb(daemon.ps),
                "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
                "window_s": t1 - t0,
                "runs_in_window": runs,
                "minutes": minutes,
            }
        finally:
            daemon.stop()
        # A deployed daemon mostly restarts on a store already at the head revision, which needs no
        # migration machinery: the same config again on the same store, RSS after the same settle.
        say(f"shipped config: restarted on its store, settling {settle:.0f}s")
        daemon = Synthmon(workdir / "shipped-again", text, env=env, port=port).start(ready_timeout_s=120)
        try:
            time.sleep(settle)
            out["rss_restart_mb"] = rss_mb(daemon.ps)
            out["restart_settle_s"] = settle
        finally:
            daemon.stop()
        say("shipped config: CPU of one MLflow client check, fresh interpreter vs zygote fork")
        out["client_check"] = client_check_cpu_s(box.env(), reps=5)
        return out


# ---- the run ----------------------------------------------------------------------------------------


#: The probe count at 1 s the daemon must carry with 0 missed runs and start lateness p99 ≤ 50 ms.
TARGET_PROBES = 250


@dataclass
class Plan:
    """Sizes and durations of one run (full or smoke)."""

    n_cpu: int = 50
    n_load: int = 100
    reps: int = 3
    warm_s: float = 8.0
    window_s: float = 20.0
    n_latency: int = 20
    ramp: tuple[int, ...] = (75, 100, 125, 150, 200, 250, 300, 400, 500)
    bb_ramp: tuple[int, ...] = (200, 400, 600, 800, 1000, 1200, 1600)
    ramp_window_s: float = 15.0
    help_reps: int = 10
    history_days: tuple[int, ...] = (30, 365)
    cmd_reps: int = 5
    api_reps: int = 40
    cache: bool = True
    shipped_minutes: float = 3.0


SMOKE = Plan(
    n_cpu=3,
    n_load=4,
    reps=1,
    warm_s=1.5,
    window_s=2.0,
    n_latency=2,
    ramp=(),
    bb_ramp=(),
    ramp_window_s=2.0,
    help_reps=1,
    history_days=(2,),
    cmd_reps=1,
    api_reps=3,
    cache=False,
    shipped_minutes=0,
)


def compile_bytecode() -> None:
    """Compile synthmon's own modules, as installing the package does (the image's ``pip install .``).

    An editable checkout run with ``PYTHONDONTWRITEBYTECODE`` (this machine sets it) would otherwise
    recompile every module of every process it starts, and bill that to start-up and CPU figures
    that a deployed synthmon never pays. Installed dependencies are compiled by pip already.
    """
    import monitor
    import probes

    dirs = [str(Path(m.__file__ or "").parent) for m in (monitor, probes)]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], check=True, timeout=300)


def measure(plan: Plan, workdir: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds")}
    compile_bytecode()
    load: list[float] = []

    def sample_load() -> None:
        load.append(os.getloadavg()[0])

    target = Target(workdir).start()
    say(f"nginx on :{target.port}")
    try:
        # CPU per check and RSS, alternating synthmon and blackbox_exporter windows.
        sm_windows, bb_windows = [], []
        for rep in range(plan.reps):
            say(f"CPU per check, round {rep + 1}/{plan.reps}: synthmon {plan.n_cpu} probes @1s")
            w, daemon = synthmon_window(workdir / f"cpu{rep}", target, plan.n_cpu, plan.warm_s, plan.window_s)
            daemon.stop()
            sm_windows.append(w)
            sample_load()
            say(f"  {w.checks} checks, {w.cpu_ms_per_check:.2f} ms CPU each, {w.missed} missed")
            say(f"CPU per check, round {rep + 1}/{plan.reps}: blackbox_exporter {plan.n_cpu} /probe per s")
            b, _ = blackbox_window(workdir / f"bb{rep}", target, plan.n_cpu, plan.window_s)
            bb_windows.append(b)
            sample_load()
            say(f"  {b.checks} checks, {b.cpu_ms_per_check:.2f} ms CPU each, {b.missed} missed")
        res["cpu_ms"] = {
            "synthmon": [w.cpu_ms_per_check for w in sm_windows],
            "blackbox": [w.cpu_ms_per_check for w in bb_windows],
        }
        res["checks_n_cpu"] = {
            "synthmon": [w.checks for w in sm_windows],
            "blackbox": [w.checks for w in bb_windows],
        }
        res["rss_load_n_cpu"] = {
            "synthmon": statistics.median(w.rss_mb for w in sm_windows),
            "blackbox": statistics.median(w.rss_mb for w in bb_windows),
        }
        res["lateness_n_cpu"] = [x for w in sm_windows for x in w.lateness_s]
        res["driver_cpu_ms"] = statistics.median(1000 * w.driver_cpu_s / max(1, w.checks) for w in bb_windows)

        # Idle RSS on the same http config (probing, nothing else): first seconds after start-up.
        say(f"RSS at {plan.n_load} probes / {plan.n_load} checks per s")
        w, daemon = synthmon_window(workdir / "load", target, plan.n_load, plan.warm_s, plan.window_s)
        daemon.stop()
        b, _ = blackbox_window(workdir / "bbload", target, plan.n_load, plan.window_s)
        res["rss_load_n_load"] = {"synthmon": w.rss_mb, "blackbox": b.rss_mb}
        res["load_n_load"] = {"synthmon_missed": w.missed, "blackbox_missed": b.missed}
        box = Blackbox(workdir / "bbidle").start()
        try:
            time.sleep(1.0)
            res["rss_idle_blackbox"] = rss_mb(box.ps)
        finally:
            box.stop()
        sample_load()

        # Latency error against the 200 ms target.
        say(f"latency: synthmon {plan.n_latency} probes on /slow")
        since = time.time()
        w, daemon = synthmon_window(
            workdir / "lat", target, plan.n_latency, plan.warm_s, plan.window_s, path="/slow"
        )
        try:
            res["latency_err_synthmon"] = latency_errors_synthmon(daemon, target, plan.n_latency, since)
        finally:
            daemon.stop()
        say(f"latency: blackbox_exporter {plan.n_latency} /probe per s on /slow")
        box = Blackbox(workdir / "bblat").start()
        try:
            checks = drive(box.port, target.url("/slow"), plan.n_latency, plan.window_s)
        finally:
            box.stop()
        res["latency_err_blackbox"] = latency_errors_blackbox(checks, target)
        res["true_latency"] = [
            t for uri, seen in target.true_latencies().items() if "/slow" in uri for _, t in seen
        ]
        sample_load()

        # Most probes at 1 s with 0 missed runs.
        best, lateness_best = plan.n_cpu if sm_windows and not any(x.missed for x in sm_windows) else 0, []
        for n in plan.ramp:
            say(f"ramp: synthmon {n} probes @1s")
            w, daemon = synthmon_window(workdir / f"ramp{n}", target, n, plan.warm_s, plan.ramp_window_s)
            daemon.stop()
            sample_load()
            expected = n * w.seconds
            say(
                f"  {w.started} runs started in the window ({expected:.0f} due; {w.checks} by the"
                f" scrapes), {w.missed} missed, CPU {100 * w.cpu_s / w.seconds:.0f}%"
            )
            if w.missed or w.started < 0.97 * expected:
                res["ramp_fail"] = {
                    "n": n,
                    "missed": w.missed,
                    "runs": w.started,
                    "due": expected,
                    "cpu_pct": 100 * w.cpu_s / w.seconds,
                }
                break
            best, lateness_best = n, w.lateness_s
            res.setdefault("ramp_lateness", {})[str(n)] = [
                quantile(w.lateness_s, 0.5),
                quantile(w.lateness_s, 0.99),
            ]
            shutil.rmtree(workdir / f"ramp{n}", ignore_errors=True)
        res["max_probes"] = best
        res["lateness_max"] = lateness_best
        bb_best = plan.n_cpu if bb_windows and not any(x.missed for x in bb_windows) else 0
        for rate in plan.bb_ramp:
            say(f"ramp: blackbox_exporter {rate} /probe per s")
            b, _ = blackbox_window(workdir / f"bbramp{rate}", target, rate, plan.ramp_window_s)
            sample_load()
            due = rate * plan.ramp_window_s
            say(
                f"  {b.checks} ok of {due:.0f}, {b.missed} missed,"
                f" driver CPU {b.driver_cpu_s / b.seconds:.0%}"
            )
            if b.missed or b.checks < 0.97 * due:
                res["bb_ramp_fail"] = {
                    "rate": rate,
                    "missed": b.missed,
                    "driver_cpu": b.driver_cpu_s / b.seconds,
                }
                break
            bb_best = rate
        res["bb_max_rate"] = bb_best
        res["bb_ramp_exhausted"] = bool(plan.bb_ramp) and bb_best == plan.bb_ramp[-1]
    finally:
        target.stop()

    say(f"synthmon --help x{plan.help_reps}")
    res["help_s"] = whole_process_s([*synthmon_cmd(), "--help"], plan.help_reps)
    res["history"] = [
        history_figures(d, cache=plan.cache, reps=plan.cmd_reps, api_reps=plan.api_reps)
        for d in plan.history_days
    ]
    sample_load()
    if plan.shipped_minutes:
        res["shipped"] = shipped_figures(workdir, plan.shipped_minutes)
        sample_load()
    res["load"] = load
    return res


# ---- the table ----------------------------------------------------------------------------------------


def _ms(x: float) -> str:
    return f"{1000 * x:.1f} ms"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def render(res: dict[str, Any], plan: Plan) -> str:
    """One Markdown table: figure, synthmon, blackbox_exporter, ratio, the issue's target."""
    rows: list[tuple[str, str, str, str, str]] = []
    sm_cpu, bb_cpu = (
        statistics.median(res["cpu_ms"]["synthmon"]),
        statistics.median(res["cpu_ms"]["blackbox"]),
    )
    rows.append(
        (
            f"CPU per HTTP check, {plan.n_cpu} probes @1 s / {plan.n_cpu} `/probe`/s (median of {plan.reps})",
            f"{sm_cpu:.2f} ms",
            f"{bb_cpu:.2f} ms",
            f"blackbox/synthmon {_ratio(bb_cpu, sm_cpu)}",
            "ratio ≥ 0.5 (aim 1)",
        )
    )
    rows.append(
        (
            f"RSS under load, {plan.n_cpu} probes @1 s",
            f"{res['rss_load_n_cpu']['synthmon']:.1f} MB",
            f"{res['rss_load_n_cpu']['blackbox']:.1f} MB",
            _ratio(res["rss_load_n_cpu"]["synthmon"], res["rss_load_n_cpu"]["blackbox"]),
            "-",
        )
    )
    rows.append(
        (
            f"RSS under load, {plan.n_load} probes @1 s",
            f"{res['rss_load_n_load']['synthmon']:.1f} MB",
            f"{res['rss_load_n_load']['blackbox']:.1f} MB",
            _ratio(res["rss_load_n_load"]["synthmon"], res["rss_load_n_load"]["blackbox"]),
            "-",
        )
    )
    shipped = res.get("shipped")
    rows.append(
        (
            f"RSS idle (synthmon: shipped config.yaml vs the sandbox, after {shipped['minutes']:g} min)"
            if shipped
            else "RSS idle (synthmon: not measured in this run)",
            f"{shipped['rss_mb']:.1f} MB" if shipped else "-",
            f"{res['rss_idle_blackbox']:.1f} MB",
            _ratio(shipped["rss_mb"], res["rss_idle_blackbox"]) if shipped else "-",
            "≤ 64 MB",
        )
    )
    if shipped and "rss_restart_mb" in shipped:
        rows.append(
            (
                "RSS idle, the same restarted on its store (schema current,"
                f" after {shipped['restart_settle_s']:.0f} s)",
                f"{shipped['rss_restart_mb']:.1f} MB",
                f"{res['rss_idle_blackbox']:.1f} MB",
                _ratio(shipped["rss_restart_mb"], res["rss_idle_blackbox"]),
                "≤ 64 MB",
            )
        )
    if shipped:
        rows.append(
            (
                "steady CPU, shipped config, healthy sandbox, children included"
                f" ({shipped['window_s']:.0f} s,"
                f" {shipped['runs_in_window']:.0f} runs)",
                f"{shipped['cpu_pct']:.1f} % of a core",
                "-",
                "-",
                "≤ 2 %",
            )
        )
        if shipped.get("zygote_rss_mb") is not None:
            rows.append(
                (
                    "RSS of the zygote (mlflow imported; isolated children fork from it)",
                    f"{shipped['zygote_rss_mb']:.1f} MB",
                    "-",
                    "-",
                    "-",
                )
            )
        check = shipped.get("client_check")
        if check:
            forked = (
                f"; zygote fork {check['forked_s']:.2f} s (zygote start {check['zygote_start_s']:.2f} s once)"
                if "forked_s" in check
                else ""
            )
            rows.append(
                (
                    f"CPU of one MLflow client check (median of {check['reps']})",
                    f"fresh interpreter {check['fresh_s']:.2f} s{forked}",
                    "-",
                    "-",
                    "-",
                )
            )
    fail = res.get("ramp_fail")
    bb_fail = res.get("bb_ramp_fail")
    rows.append(
        (
            "most probes @1 s with 0 missed runs (ramp)",
            f"{res['max_probes']}"
            + (
                f" (at {fail['n']}: "
                + (
                    f"{fail['missed']} missed"
                    if fail["missed"]
                    else f"{fail['runs']} of {fail['due']:.0f} runs due started"
                )
                + f", daemon at {fail.get('cpu_pct', 0):.0f} % of a core)"
                if fail
                else ""
            ),
            f"≥ {res['bb_max_rate']} checks/s"
            + (" (ramp top)" if res.get("bb_ramp_exhausted") else "")
            + (f" (at {bb_fail['rate']}: {bb_fail['missed']} missed)" if bb_fail else ""),
            _ratio(res["max_probes"], res["bb_max_rate"]),
            f"≥ {TARGET_PROBES} (aim 500)",
        )
    )
    late = res["lateness_n_cpu"]
    rows.append(
        (
            f"start lateness p50 / p99 at {plan.n_cpu} probes @1 s",
            f"{_ms(quantile(late, 0.5))} / {_ms(quantile(late, 0.99))}",
            "-",
            "-",
            "p99 ≤ 50 ms",
        )
    )
    at_target = res.get("ramp_lateness", {}).get(str(TARGET_PROBES))
    if at_target and res["max_probes"] != TARGET_PROBES:
        rows.append(
            (
                f"start lateness p50 / p99 at {TARGET_PROBES} probes @1 s (the target's size)",
                f"{_ms(at_target[0])} / {_ms(at_target[1])}",
                "-",
                "-",
                "p99 ≤ 50 ms",
            )
        )
    if res.get("lateness_max"):
        late = res["lateness_max"]
        rows.append(
            (
                f"start lateness p50 / p99 at {res['max_probes']} probes @1 s",
                f"{_ms(quantile(late, 0.5))} / {_ms(quantile(late, 0.99))}",
                "-",
                "-",
                "p99 ≤ 50 ms",
            )
        )
    se, be = res["latency_err_synthmon"], res["latency_err_blackbox"]
    rows.append(
        (
            f"reported - true latency, target holding 200 ms, p50 / p99 ({len(se)} / {len(be)} checks)",
            f"{_ms(quantile(se, 0.5))} / {_ms(quantile(se, 0.99))}",
            f"{_ms(quantile(be, 0.5))} / {_ms(quantile(be, 0.99))}",
            f"p99 {_ratio(quantile(se, 0.99), quantile(be, 0.99))}",
            "p99 ≤ blackbox's",
        )
    )
    truth = res["true_latency"]
    rows.append(
        (
            "true latency (nginx `$request_time`), p50 / p99",
            f"{_ms(quantile(truth, 0.5))} / {_ms(quantile(truth, 0.99))}",
            "(same target)",
            "-",
            "-",
        )
    )
    rows.append(
        (
            f"`synthmon --help`, whole process (median of {len(res['help_s'])})",
            _ms(statistics.median(res["help_s"])),
            "-",
            "-",
            "≤ 200 ms",
        )
    )
    for h in res["history"]:
        span = f"{h['days']} days" if h["days"] != 365 else "1 year"
        rows.append(
            (
                f"{span} of history (5 probes @1 min, {h['runs']:,} runs): DB size / bytes per run",
                f"{h['db_bytes'] / 1e9:.2f} GB / {h['bytes_per_run']:.0f} B",
                "-",
                "-",
                "≤ half of today's size",
            )
        )
        rows.append(
            (
                f"{span}: `uptime` / `history --probe auth`, whole process,"
                f" median (max of {len(h['uptime_s'])})",
                f"{_ms(statistics.median(h['uptime_s']))} ({_ms(max(h['uptime_s']))}) / "
                f"{_ms(statistics.median(h['history_s']))} ({_ms(max(h['history_s']))})",
                "-",
                "-",
                "≤ 300 ms",
            )
        )
        rows.append(
            (
                f"{span}: `GET /api/v1/status` / status page, p95 of {len(h['status_api_s'])}",
                f"{_ms(quantile(h['status_api_s'], 0.95))} / {_ms(quantile(h['status_page_s'], 0.95))}",
                "-",
                "-",
                "≤ 50 ms",
            )
        )
    head = "| figure | synthmon | blackbox_exporter | ratio | target |\n|---|---|---|---|---|\n"
    body = "".join(f"| {' | '.join(r)} |\n" for r in rows)
    load = res["load"]
    foot = (
        f"\n{res['started']}, `nproc` {os.cpu_count()}, {_cpu_model()}; load average (1 min) during the run"
        f" {min(load):.2f} to {max(load):.2f}, median {statistics.median(load):.2f}."
        f" Driver CPU per `/probe` call (not charged to blackbox_exporter): {res['driver_cpu_ms']:.2f} ms.\n"
    )
    return head + body + foot


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="synthmon-bench-"))
    try:
        yield path
    finally:
        if keep:
            say(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="every part once at tiny sizes (seconds)")
    parser.add_argument("--no-ramp", action="store_true", help="skip the probes-at-1s ramps")
    parser.add_argument("--no-history", action="store_true", help="skip the history part")
    parser.add_argument(
        "--shipped-minutes", type=float, help="minutes of the shipped-config run (0 skips it)"
    )
    parser.add_argument(
        "--history-days", type=int, nargs="*", help="history spans to measure (default 30 365)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.upstream:
        asyncio.run(_upstream_main(args.upstream, HOLD_S))
        return 0
    plan = SMOKE if args.smoke else Plan()
    if args.no_ramp:
        plan.ramp, plan.bb_ramp = (), ()
    if args.no_history:
        plan.history_days = ()
    if args.history_days is not None:
        plan.history_days = tuple(args.history_days)
    if args.shipped_minutes is not None:
        plan.shipped_minutes = args.shipped_minutes
    for tool in ("nginx", "prometheus-blackbox-exporter"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            print(
                f"{tool} is not installed (apt-get install nginx prometheus-blackbox-exporter)",
                file=sys.stderr,
            )
            return 2
    with _workdir(args.keep) as workdir:
        res = measure(plan, workdir)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    print(render(res, plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
