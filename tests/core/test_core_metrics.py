"""Metrics: every series from a run, bounded labels, valid exposition (parser and promtool)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.alerting.metrics import RESULTS, AlertingMetrics
from monitor.metrics import Metrics
from monitor.results import ProbeResult
from monitor.store.metrics import OPERATIONS, StoreMetrics
from probes.base import HttpTiming, Status, StepResult

REPO = Path(__file__).resolve().parents[2]
STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _result(status: Status, steps: tuple[StepResult, ...], probe: str = "auth") -> ProbeResult:
    return ProbeResult(
        probe=probe,
        kind="http",
        run_id="0" * 32,
        started_at=STARTED,
        duration_s=0.42,
        status=status,
        steps=steps,
    )


OK_STEP = StepResult(
    name="validate",
    status=Status.PASS,
    duration_s=0.2,
    http_status=200,
    path="/api/v1/keys/validate",
    timing=HttpTiming(connect_s=0.01, ttfb_s=0.15, total_s=0.2),
    measurements={"bytes_per_second": 1234.5},
)
FAILED_STEP = StepResult(
    name="validate",
    status=Status.FAIL,
    duration_s=1.0,
    error_class="connect_error",
    message="GET http://secret-host/x failed",
    path="/x",
    timing=HttpTiming(total_s=1.0),
)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_record_sets_every_series() -> None:
    """One passing run sets success, one-hot status, histograms, counters, HTTP and measurement series."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, version="1.2.3")
    metrics.declare(["auth"])
    metrics.record(_result(Status.PASS, (OK_STEP,)))
    s = _samples(registry)
    assert _get(s, "synthmon_probe_success", probe="auth") == 1
    assert _get(s, "synthmon_probe_status", probe="auth", status="PASS") == 1
    assert _get(s, "synthmon_probe_status", probe="auth", status="FAIL") == 0
    assert _get(s, "synthmon_probe_duration_seconds_count", probe="auth") == 1
    assert _get(s, "synthmon_step_duration_seconds_sum", probe="auth", step="validate") == pytest.approx(0.2)
    assert _get(s, "synthmon_step_success", probe="auth", step="validate") == 1
    assert _get(s, "synthmon_probe_runs_total", probe="auth", status="PASS") == 1
    assert _get(s, "synthmon_probe_runs_total", probe="auth", status="ERROR") == 0
    assert _get(s, "synthmon_probe_last_run_timestamp_seconds", probe="auth") == STARTED.timestamp()
    assert _get(s, "synthmon_probe_consecutive_failures", probe="auth") == 0
    assert _get(s, "synthmon_http_status_code", probe="auth", step="validate") == 200
    assert (
        _get(s, "synthmon_http_phase_duration_seconds", probe="auth", step="validate", phase="ttfb") == 0.15
    )
    assert (
        _get(s, "synthmon_step_measurement", probe="auth", step="validate", measurement="bytes_per_second")
        == 1234.5
    )
    assert _get(s, "synthmon_scheduler_missed_runs_total", probe="auth") == 0
    assert _get(s, "synthmon_config_reloads_total", result="failure") == 0
    assert _get(s, "synthmon_build_info", version="1.2.3") == 1


def test_failures_count_up_and_reset() -> None:
    """Consecutive failures grow with FAIL/ERROR runs, reset on a pass; no response means status code 0."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.record(_result(Status.FAIL, (FAILED_STEP,)))
    metrics.record(_result(Status.ERROR, (FAILED_STEP.with_(status=Status.ERROR),)))
    s = _samples(registry)
    assert _get(s, "synthmon_probe_consecutive_failures", probe="auth") == 2
    assert _get(s, "synthmon_probe_success", probe="auth") == 0
    assert _get(s, "synthmon_http_status_code", probe="auth", step="validate") == 0
    assert _get(s, "synthmon_probe_status", probe="auth", status="ERROR") == 1
    metrics.record(_result(Status.PASS, (OK_STEP,)))
    assert _get(_samples(registry), "synthmon_probe_consecutive_failures", probe="auth") == 0


def _series(registry: CollectorRegistry, step: str) -> set[str]:
    """Names of every sample of probe auth and ``step`` (histogram parts included)."""
    return {name for (name, labels) in _samples(registry) if ("step", step) in labels}


RUN_ERROR = StepResult(name="run", status=Status.ERROR, error_class="deadline_exceeded", message="deadline")


def test_error_run_clears_the_previous_runs_step_series() -> None:
    """After an ERROR run (one synthetic `run` step) the old steps read failed, with no HTTP series left."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.record(_result(Status.PASS, (OK_STEP,)))
    metrics.record(_result(Status.ERROR, (RUN_ERROR,)))
    s = _samples(registry)
    assert _get(s, "synthmon_step_success", probe="auth", step="validate") == 0
    assert _get(s, "synthmon_step_success", probe="auth", step="run") == 0
    left = _series(registry, "validate")
    assert "synthmon_http_status_code" not in left
    assert "synthmon_http_phase_duration_seconds" not in left
    assert "synthmon_step_measurement" not in left


def test_normal_run_removes_the_synthetic_run_step() -> None:
    """Once the probe reports its real steps again, the `run` step's series disappear."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.record(_result(Status.ERROR, (RUN_ERROR,)))
    metrics.record(_result(Status.PASS, (OK_STEP,)))
    assert _series(registry, "run") == set()
    s = _samples(registry)
    assert _get(s, "synthmon_step_success", probe="auth", step="validate") == 1
    assert _get(s, "synthmon_http_status_code", probe="auth", step="validate") == 200


def test_skipped_step_has_no_http_status() -> None:
    """A step that ran with a 200 and is SKIPPED next time exports no status code, phases or measurements
    (its run counter by status stays: SLOs leave SKIPPED out by that label)."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.record(_result(Status.PASS, (OK_STEP,)))
    skipped = StepResult(name="validate", status=Status.SKIPPED, message="auth failed")
    metrics.record(_result(Status.FAIL, (FAILED_STEP.with_(name="health"), skipped)))
    left = _series(registry, "validate")
    assert left == {
        "synthmon_step_success",
        "synthmon_step_runs_total",
        *_histogram("synthmon_step_duration_seconds"),
    }
    assert _get(_samples(registry), "synthmon_step_success", probe="auth", step="validate") == 0


def _histogram(name: str) -> set[str]:
    return {f"{name}_bucket", f"{name}_count", f"{name}_sum"}


def test_labels_never_carry_urls_or_error_text() -> None:
    """Messages, hosts and paths stay out of the exposition entirely."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.record(_result(Status.FAIL, (FAILED_STEP,)))
    text = generate_latest(registry).decode()
    assert "secret-host" not in text
    assert "/x" not in text
    assert "connect_error" not in text


def test_forget_drops_a_removed_probe() -> None:
    """After a reload removes a probe, none of its series remain."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.declare(["auth", "other"])
    metrics.record(_result(Status.PASS, (OK_STEP,)))
    metrics.record(_result(Status.PASS, (OK_STEP,), probe="other"))
    metrics.forget("auth")
    text = generate_latest(registry).decode()
    assert 'probe="auth"' not in text
    assert 'probe="other"' in text


def test_series_come_back_after_their_removal() -> None:
    """A probe forgotten and then configured again, and a `run` step that comes back after real
    steps removed it, export their series again (children are reused across runs, never stale)."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.record(_result(Status.ERROR, (RUN_ERROR,)))
    metrics.record(_result(Status.PASS, (OK_STEP,)))
    metrics.record(_result(Status.ERROR, (RUN_ERROR,)))
    s = _samples(registry)
    assert _get(s, "synthmon_step_success", probe="auth", step="run") == 0
    assert _get(s, "synthmon_step_duration_seconds_count", probe="auth", step="run") == 1
    metrics.forget("auth")
    metrics.record(_result(Status.PASS, (OK_STEP,)))
    s = _samples(registry)
    assert _get(s, "synthmon_probe_success", probe="auth") == 1
    assert _get(s, "synthmon_probe_runs_total", probe="auth", status="PASS") == 1
    phase = _get(s, "synthmon_http_phase_duration_seconds", probe="auth", step="validate", phase="ttfb")
    assert phase == 0.15


def test_counters_for_missed_runs_reloads_and_sinks() -> None:
    """Missed runs, reload results and sink errors are counted under bounded labels."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.missed_run("auth")
    metrics.missed_run("auth")
    metrics.config_reload(ok=False)
    metrics.sink_error("HistorySink")
    s = _samples(registry)
    assert _get(s, "synthmon_scheduler_missed_runs_total", probe="auth") == 2
    assert _get(s, "synthmon_config_reloads_total", result="failure") == 1
    assert _get(s, "synthmon_sink_errors_total", sink="HistorySink") == 1


def test_promtool_accepts_the_exposition() -> None:
    """`promtool check metrics` reports no problem (names, units, help) on a fully populated registry."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`; .ci/run installs it)")
    registry = CollectorRegistry()
    metrics = Metrics(registry, version="0.1.0")
    metrics.declare(["auth"])
    metrics.record(_result(Status.PASS, (OK_STEP,)))
    metrics.record(_result(Status.FAIL, (FAILED_STEP,)))
    metrics.missed_run("auth")
    metrics.config_reload(ok=True)
    metrics.sink_error("S")
    metrics.job_error("prune")
    proc = subprocess.run(
        [promtool, "check", "metrics"],
        input=generate_latest(registry),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert proc.stdout.decode().strip() == ""
    assert proc.stderr.decode().strip() == ""


def test_declare_precreates_sink_counters_and_sets_intervals() -> None:
    """declare() creates sink error counters at 0 and the interval gauge; forget() removes the gauge."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.declare(["auth", "mlflow"], intervals={"auth": 60.0, "mlflow": 300.0}, sinks=["HistorySink"])
    s = _samples(registry)
    assert _get(s, "synthmon_sink_errors_total", sink="HistorySink") == 0
    assert _get(s, "synthmon_probe_interval_seconds", probe="auth") == 60.0
    assert _get(s, "synthmon_probe_interval_seconds", probe="mlflow") == 300.0
    metrics.declare(["auth"], intervals={"auth": 30.0})  # a reload shortened it
    assert _get(_samples(registry), "synthmon_probe_interval_seconds", probe="auth") == 30.0
    metrics.forget("mlflow")
    assert 'probe="mlflow"' not in generate_latest(registry).decode()


def test_job_errors_are_labelled_task_not_job() -> None:
    """Housekeeping job failures use label `task`: Prometheus reserves `job` for the scrape target."""
    registry = CollectorRegistry()
    Metrics(registry).job_error("history-flush")
    assert _get(_samples(registry), "synthmon_job_errors_total", task="history-flush") == 1
    assert 'job="' not in generate_latest(registry).decode()


def test_notification_and_store_error_counters_start_at_zero() -> None:
    """Every configured channel x result and every store operation exists at 0 before any failure."""
    registry = CollectorRegistry()
    AlertingMetrics(registry).declare(["slack", "log"])
    StoreMetrics(registry)
    s = _samples(registry)
    for channel in ("slack", "log"):
        for result in RESULTS:
            assert _get(s, "synthmon_notifications_total", channel=channel, result=result) == 0
    for operation in OPERATIONS:
        assert _get(s, "synthmon_store_errors_total", operation=operation) == 0


def test_store_operations_list_every_operation_the_code_counts() -> None:
    """OPERATIONS names every `operation=` label used in monitor/, so none is missing at start-up."""
    used = {
        match
        for path in (REPO / "monitor").rglob("*.py")
        for match in re.findall(r'errors\.labels\(operation="([a-z_]+)"\)', path.read_text())
    }
    assert used, "no store error counters found: the pattern is stale"
    assert used <= set(OPERATIONS)


def test_exposition_has_no_created_series() -> None:
    """Counters and histograms of every metric class export no ``*_created`` sample."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    AlertingMetrics(registry).notifications.labels(channel="slack", result="sent").inc()
    StoreMetrics(registry).errors.labels(operation="append").inc()
    metrics.declare(["auth"], sinks=["history"])
    metrics.record(_result(Status.PASS, (OK_STEP,)))
    names = {name for name, _ in _samples(registry)}
    assert "synthmon_probe_runs_total" in names  # the scan read real counter samples
    assert "synthmon_notifications_total" in names
    assert not [name for name in names if name.endswith("_created")]


def test_certificate_expiry_is_its_own_absolute_gauge() -> None:
    """A cert step's notAfter becomes synthmon_tls_cert_expiry_timestamp_seconds, not a measurement."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    not_after = 1_790_000_000.0
    cert = StepResult(
        name="cert_registry",
        status=Status.PASS,
        measurements={"cert_days_left": 42.5, "cert_expiry_timestamp_seconds": not_after},
    )
    metrics.record(_result(Status.PASS, (cert,), probe="alb_health"))
    s = _samples(registry)
    labels = {"probe": "alb_health", "step": "cert_registry"}
    assert _get(s, "synthmon_tls_cert_expiry_timestamp_seconds", **labels) == not_after
    assert _get(s, "synthmon_step_measurement", measurement="cert_days_left", **labels) == 42.5
    measured = {dict(key)["measurement"] for name, key in s if name == "synthmon_step_measurement"}
    assert measured == {"cert_days_left"}
    # The certificate could not be read in the next run: no expiry is claimed any more.
    failed = StepResult(name="cert_registry", status=Status.FAIL, error_class="tls_error")
    metrics.record(_result(Status.FAIL, (failed,), probe="alb_health"))
    assert "synthmon_tls_cert_expiry_timestamp_seconds" not in _series(registry, "cert_registry")
    metrics.record(_result(Status.PASS, (cert,), probe="alb_health"))
    metrics.forget("alb_health")
    assert "synthmon_tls_cert_expiry_timestamp_seconds{" not in generate_latest(registry).decode()


def test_checks_gauge_counts_the_runs_steps_once() -> None:
    """alb_health 9/10: passed 9, failed 1, skipped 0; no summary step series; removed on forget."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    checks = [StepResult(name=f"c{i}", status=Status.PASS) for i in range(9)]
    checks.append(StepResult(name="registry_health", status=Status.FAIL, http_status=503))
    metrics.record(_result(Status.FAIL, tuple(checks), probe="alb_health"))
    s = _samples(registry)
    counts = {r: _get(s, "synthmon_probe_checks", probe="alb_health", result=r) for r in ("passed", "failed")}
    assert counts == {"passed": 9, "failed": 1}
    assert _get(s, "synthmon_probe_checks", probe="alb_health", result="skipped") == 0
    failing = [k for k, v in s.items() if k[0] == "synthmon_step_success" and v == 0]
    assert failing == [
        ("synthmon_step_success", frozenset({("probe", "alb_health"), ("step", "registry_health")}))
    ]
    skipped = (StepResult(name="upload", status=Status.FAIL), StepResult(name="list", status=Status.SKIPPED))
    metrics.record(_result(Status.FAIL, skipped, probe="alb_health"))
    s = _samples(registry)
    assert [
        _get(s, "synthmon_probe_checks", probe="alb_health", result=r)
        for r in ("passed", "failed", "skipped")
    ] == [
        0,
        1,
        1,
    ]
    metrics.forget("alb_health")
    assert not [k for k in _samples(registry) if k[0] == "synthmon_probe_checks"]
