"""A realistic synthmon /metrics exposition for the dashboard tests, served on loopback.

The series come from the daemon's own metric classes (``monitor.metrics.Metrics``,
``monitor.alerting.metrics.AlertingMetrics``, ``monitor.store.metrics.StoreMetrics``,
``monitor.history.metrics.HistoryMetrics``) on one
``CollectorRegistry`` of this helper's, fed with simulated :class:`ProbeResult` runs. So the
dashboards are checked against what the daemon really exports, not against a copy of its names.

Each scrape simulates one run of every probe: mostly PASS, the seed incident's artifact upload 404
every third run (FAIL, later steps SKIPPED), a DEGRADED registration, Slack failing now and then, a
rejected config reload, a missed run. Prometheus scraping it every second sees counters move and
histograms fill, like production sped up.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor.alerting.metrics import AlertingMetrics
from monitor.baselines.judge import Baseline
from monitor.baselines.metrics import BaselineMetrics
from monitor.history.metrics import HistoryMetrics
from monitor.metrics import Metrics
from monitor.results import ProbeResult
from monitor.store.metrics import StoreMetrics
from probes.base import HttpTiming, Status, StepResult, skipped

#: probe -> its steps, in order (bounded label values, as the probes name them).
PROBES: dict[str, tuple[str, ...]] = {
    "auth": ("validate_key",),
    "alb_health": ("auth_health", "auth_root", "registry_health", "mlflow_ui", "tls_cert"),
    "mlflow_api": ("search_experiments",),
    "artifact_roundtrip": ("create_run", "upload", "list", "download", "delete"),
    "registration": ("set_experiment", "log_model", "register_model", "load_model"),
}


class FakeSynthmon:
    """The daemon's metric classes on one registry, advanced one simulated run per scrape."""

    def __init__(self, seed: int = 7) -> None:
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, version="0.1.0")
        self.alerting = AlertingMetrics(self.registry)
        self.store = StoreMetrics(self.registry)
        self.history = HistoryMetrics(self.registry)
        self.baselines = BaselineMetrics(self.registry)
        # The default config's intervals (registration every 15 minutes, the others every few).
        self.metrics.declare(PROBES, intervals={p: 900.0 if p == "registration" else 60.0 for p in PROBES})
        self._rng = random.Random(seed)
        self._runs = 0
        self._lock = threading.Lock()

    def tick(self) -> None:
        """Simulate one run of every probe plus the daemon's housekeeping (thread-safe)."""
        with self._lock:
            self._runs += 1
            for probe, steps in PROBES.items():
                self.metrics.record(self._result(probe, steps))
            if self._runs % 2 == 0:
                self.metrics.missed_run("registration")
            self.metrics.config_reload(ok=self._runs % 5 != 0)
            result = "sent" if self._runs % 3 else "transient_error"
            self.alerting.notifications.labels(channel="slack", result=result).inc()
            self.alerting.outbox_pending.labels(channel="slack").set(0 if result == "sent" else 1)
            self.history.buffer_depth.set(self._runs % 4)
            # This location's own view of the artifact probe (failing every third run, as below).
            self.alerting.location_failing.labels(probe="artifact_roundtrip", location="default").set(
                1 if self._runs % 3 == 0 else 0
            )
            # Every step has its baseline; the artifact upload is regressed every third run.
            self.baselines.baselines(
                {
                    (p, s): Baseline(
                        p,
                        s,
                        seconds=0.2,
                        runs=1000,
                        since=datetime(2025, 7, 15, tzinfo=UTC),
                        name="7-day p95",
                    )
                    for p, steps in PROBES.items()
                    for s in steps
                }
            )
            self.baselines.regressed([(("artifact_roundtrip", "upload"), self._runs % 3 == 1)])
            # Now and then the store hiccups and a housekeeping job fails, as in production.
            if self._runs % 4 == 0:
                self.store.errors.labels(operation="append").inc()
                self.metrics.sink_error("history")
                self.metrics.job_error("retention")

    def _result(self, probe: str, steps: tuple[str, ...]) -> ProbeResult:
        out: list[StepResult] = []
        broken: str | None = None
        for step in steps:
            if broken:
                out.append(skipped(step, broken))
                continue
            connect = self._rng.uniform(0.001, 0.02)
            tls = self._rng.uniform(0.005, 0.04)
            ttfb = self._rng.uniform(0.02, 0.4) * (8 if probe == "registration" else 1)
            total = connect + tls + ttfb + self._rng.uniform(0.001, 0.05)
            status, code = Status.PASS, 200
            measurements: dict[str, float] = {}
            # The July 2025 incident: the artifact upload answers 404 (every third run here).
            if probe == "artifact_roundtrip" and step == "upload" and self._runs % 3 == 0:
                status, code, broken = Status.FAIL, 404, step
            elif probe == "registration" and step == "log_model":
                status = Status.DEGRADED
            if status is not Status.FAIL and step in ("upload", "download", "log_model", "load_model"):
                direction = "upload" if step in ("upload", "log_model") else "download"
                measurements[f"{direction}_bytes_per_second"] = self._rng.uniform(2e6, 2e7)
            if step == "tls_cert":
                measurements["cert_days_left"] = 61.0
                measurements["cert_expiry_timestamp_seconds"] = datetime.now(UTC).timestamp() + 61 * 86400
            out.append(
                StepResult(
                    name=step,
                    status=status,
                    duration_s=total,
                    http_status=code,
                    timing=HttpTiming(connect_s=connect, tls_s=tls, ttfb_s=ttfb, total_s=total),
                    measurements=measurements,
                )
            )
        return ProbeResult(
            probe=probe,
            kind=probe,
            run_id=uuid.uuid4().hex,
            started_at=datetime.now(UTC),
            duration_s=sum(s.duration_s for s in out),
            status=ProbeResult.status_of(out),
            steps=tuple(out),
            environment="test",
        )

    def exposition(self) -> bytes:
        """One scrape: run every probe once more, then the text format."""
        self.tick()
        return generate_latest(self.registry)


@contextmanager
def serve(fake: FakeSynthmon) -> Iterator[str]:
    """Serve ``fake`` as ``/metrics`` on a free loopback port; yields ``host:port``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = fake.exposition()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes every second would flood the test output."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-synthmon", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
