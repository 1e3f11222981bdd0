"""Prometheus series for synthmon, on a registry passed in (never the global default).

Every series is prefixed ``synthmon_`` and uses base units. Labels are bounded: probe and step
names come from config and code, ``status`` from :class:`probes.base.Status`, ``phase`` from
:meth:`probes.base.HttpTiming.phases`, ``measurement`` from probe code, ``result`` from
:data:`CHECK_RESULTS`. URLs, error texts and ids never become labels; they live in logs and history.

``record(result)`` is the first consumer of every finished run (before the other sinks).

No ``*_created`` series: prometheus_client adds one per counter and histogram child (the time it
was created), dozens of series that no dashboard or rule reads and that Prometheus 2.x ingests as
ordinary gauges. The client's switch for them, ``disable_created_metrics()``, is a module global
consulted at every collection, for every registry in the process; there is no per-registry
setting. :class:`Metrics` flips it when it is constructed (never at import): the daemon process
has exactly one exposition, built around one :class:`Metrics`, so the switch is process-wide by
design, and every other collector on the registry (alerting, store) loses its ``_created`` too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from monitor.results import ProbeResult
from probes.base import CERT_EXPIRY_MEASUREMENT, RUN_STEP, Status

#: The ``result`` label values of ``synthmon_probe_checks``.
CHECK_RESULTS = ("passed", "failed", "skipped")

#: Run/step durations: from a fast health check to a full model registration.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """All synthmon series on one registry, and the per-probe state they need (failure streaks)."""

    def __init__(self, registry: CollectorRegistry, *, version: str = "unknown") -> None:
        # Process-wide and idempotent; see the module docstring for why it cannot be per registry.
        # The ignore: prometheus_client leaves this one function unannotated.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        self._consecutive: dict[str, int] = {}
        self._steps: dict[str, set[str]] = {}
        # What the last run of each (probe, step) exported, so the next run can remove the rest.
        self._phases: dict[tuple[str, str], set[str]] = {}
        self._measured: dict[tuple[str, str], set[str]] = {}
        # (probe, step) whose certificate-expiry gauge exists: removing an absent child raises
        # inside prometheus_client, which every run of every step without a certificate would pay.
        self._expiring: set[tuple[str, str]] = set()
        # What the last run of each probe set the one-hot status and the checks to: a run that
        # changes neither (nearly every run) skips those eight gauge writes.
        self._shown: dict[str, tuple[Status, int, int, int]] = {}
        # Children by metric and label values: ``labels()`` validates and sorts its arguments and
        # takes a lock on every call, about 20 calls a run; a dict lookup is a fraction of that.
        # Every removal goes through :meth:`_remove`, which forgets the cached child too.
        self._bound: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = registry
        self.probe_success = Gauge(
            "synthmon_probe_success",
            "1 when the last run passed (PASS or DEGRADED), else 0",
            ["probe"],
            registry=r,
        )
        self.probe_status = Gauge(
            "synthmon_probe_status",
            "Status of the last run, one-hot over status",
            ["probe", "status"],
            registry=r,
        )
        # The run's "N/M passed" (ProbeResult.checks): alb_health's checks at a glance, without a
        # summary step that would count every failing check twice.
        self.probe_checks = Gauge(
            "synthmon_probe_checks",
            "Steps of the last run by result: passed (PASS/DEGRADED), failed (FAIL/ERROR), skipped",
            ["probe", "result"],
            registry=r,
        )
        self.probe_duration = Histogram(
            "synthmon_probe_duration_seconds",
            "Wall time of a probe run",
            ["probe"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.step_duration = Histogram(
            "synthmon_step_duration_seconds",
            "Duration of one step of a probe run",
            ["probe", "step"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.step_success = Gauge(
            "synthmon_step_success",
            "1 when the step passed (PASS or DEGRADED) in the last run; 0 on FAIL, ERROR or SKIPPED",
            ["probe", "step"],
            registry=r,
        )
        self.runs = Counter(
            "synthmon_probe_runs", "Probe runs by final status", ["probe", "status"], registry=r
        )
        # Per step, for step SLOs in Prometheus (the same good/bad split as monitor.slo.budget).
        self.step_runs = Counter(
            "synthmon_step_runs", "Steps of probe runs by status", ["probe", "step", "status"], registry=r
        )
        self.last_run = Gauge(
            "synthmon_probe_last_run_timestamp_seconds",
            "Unix time at which the last run started",
            ["probe"],
            registry=r,
        )
        self.consecutive_failures = Gauge(
            "synthmon_probe_consecutive_failures",
            "Runs in a row that ended FAIL or ERROR (0 after a passing run)",
            ["probe"],
            registry=r,
        )
        self.http_status = Gauge(
            "synthmon_http_status_code",
            "HTTP status of the step's last exchange (0 when no response was received)",
            ["probe", "step"],
            registry=r,
        )
        self.http_phase = Gauge(
            "synthmon_http_phase_duration_seconds",
            "Duration of each phase (connect, tls, ttfb, total) of the step's last HTTP exchange",
            ["probe", "step", "phase"],
            registry=r,
        )
        self.measurement = Gauge(
            "synthmon_step_measurement",
            "Numeric facts a probe step reports (names are defined by probe code)",
            ["probe", "step", "measurement"],
            registry=r,
        )
        self.cert_expiry = Gauge(
            "synthmon_tls_cert_expiry_timestamp_seconds",
            "Unix time at which the certificate checked by the step expires (its notAfter)",
            ["probe", "step"],
            registry=r,
        )
        self.missed = Counter(
            "synthmon_scheduler_missed_runs",
            "Scheduled runs not started (still running, or missed beyond the grace time)",
            ["probe"],
            registry=r,
        )
        self.reloads = Counter(
            "synthmon_config_reloads", "Config reloads (SIGHUP) by result", ["result"], registry=r
        )
        self.sink_errors = Counter(
            "synthmon_sink_errors", "Results a sink failed to handle (it raised)", ["sink"], registry=r
        )
        # `task`, not `job`: Prometheus owns `job` (the scrape target) and would rename ours.
        self.job_errors = Counter(
            "synthmon_job_errors", "Runs of a periodic housekeeping job that raised", ["task"], registry=r
        )
        self.interval = Gauge(
            "synthmon_probe_interval_seconds",
            "Configured time between run starts (for staleness: time() - last run > k * interval)",
            ["probe"],
            registry=r,
        )
        self.build_info = Gauge(
            "synthmon_build_info", "Always 1; the version as a label", ["version"], registry=r
        )
        self.build_info.labels(version=version).set(1)
        for result in ("success", "failure"):
            self.reloads.labels(result=result)

    def declare(
        self,
        probes: Iterable[str],
        *,
        intervals: Mapping[str, float] | None = None,
        sinks: Iterable[str] = (),
    ) -> None:
        """Create each probe's and sink's counters at 0, so ``increase()`` sees the first failure.

        ``intervals`` (probe -> seconds) sets ``synthmon_probe_interval_seconds``; call again on
        reload with the new config's values.
        """
        for probe in probes:
            self.missed.labels(probe=probe)
            for status in Status:
                self.runs.labels(probe=probe, status=status.value)
        for probe, seconds in (intervals or {}).items():
            self.interval.labels(probe=probe).set(seconds)
        for sink in sinks:
            self.sink_errors.labels(sink=sink)

    def record(self, result: ProbeResult) -> None:
        """Update every series from one finished run."""
        probe = result.probe
        checks = result.checks
        shown = (result.status, checks.passed, checks.failed, checks.skipped)
        if self._shown.get(probe) != shown:
            self._shown[probe] = shown
            self._child(self.probe_success, probe).set(1 if result.status.ok else 0)
            for status in Status:
                self._child(self.probe_status, probe, status.value).set(1 if status is result.status else 0)
            counts = {"passed": checks.passed, "failed": checks.failed, "skipped": checks.skipped}
            for outcome in CHECK_RESULTS:
                self._child(self.probe_checks, probe, outcome).set(counts[outcome])
        self._child(self.probe_duration, probe).observe(result.duration_s)
        self._child(self.runs, probe, result.status.value).inc()
        self._child(self.last_run, probe).set(result.started_at.timestamp())
        failed = result.status in (Status.FAIL, Status.ERROR)
        streak = self._consecutive.get(probe, 0) + 1 if failed else 0
        self._consecutive[probe] = streak
        self._child(self.consecutive_failures, probe).set(streak)
        seen = self._steps.setdefault(probe, set())
        current = {step.name for step in result.steps}
        for name in sorted(seen - current):
            if name == RUN_STEP:
                # The runner's synthetic step (the run raised or timed out): it describes that run
                # only, so it disappears once the probe reports its real steps again.
                self._drop_step(probe, name)
                seen.discard(name)
            else:
                # A step of an earlier run that did not happen this time (e.g. after an ERROR run):
                # it did not pass, and it made no HTTP exchange.
                self._child(self.step_success, probe, name).set(0)
                self._set_http(probe, name, None, None)
                self._set_measurements(probe, name, {})
        for step in result.steps:
            if step.name not in seen:
                # Every status at 0 from the step's first run, so increase() sees its first FAIL.
                for status in Status:
                    self.step_runs.labels(probe=probe, step=step.name, status=status.value)
            seen.add(step.name)
            self._child(self.step_success, probe, step.name).set(1 if step.status.ok else 0)
            self._child(self.step_runs, probe, step.name, step.status.value).inc()
            if step.status is Status.SKIPPED:
                # A skipped step sent nothing: no status code, no phases, no measurements.
                self._set_http(probe, step.name, None, None)
                self._set_measurements(probe, step.name, {})
                continue
            self._child(self.step_duration, probe, step.name).observe(step.duration_s)
            if step.http_status is not None:
                code: int | None = step.http_status
            elif step.timing is not None:
                # An HTTP step without a response (refused, timed out): blackbox_exporter's 0.
                code = 0
            else:
                code = None
            self._set_http(probe, step.name, code, step.timing.phases() if step.timing is not None else None)
            self._set_measurements(probe, step.name, step.measurements)

    def _set_http(self, probe: str, step: str, code: int | None, phases: dict[str, float] | None) -> None:
        """Set the step's HTTP gauges, removing those the last run did not produce."""
        if code is None:
            self._remove(self.http_status, probe, step)
        else:
            self._child(self.http_status, probe, step).set(code)
        new = phases or {}
        for phase in self._phases.get((probe, step), set()) - set(new):
            self._remove(self.http_phase, probe, step, phase)
        for phase, seconds in new.items():
            self._child(self.http_phase, probe, step, phase).set(seconds)
        self._phases[(probe, step)] = set(new)

    def _set_measurements(self, probe: str, step: str, values: Mapping[str, float]) -> None:
        """Set the step's measurements, removing names the last run did not report.

        A certificate's expiry goes to its own gauge instead: an absolute timestamp plotted among
        throughputs and counts would flatten them, and alert rules want it under a stable name.
        """
        key = (probe, step)
        expiry = values.get(CERT_EXPIRY_MEASUREMENT)
        if expiry is not None:
            self._child(self.cert_expiry, probe, step).set(expiry)
            self._expiring.add(key)
        elif key in self._expiring:
            self._expiring.discard(key)
            self._remove(self.cert_expiry, probe, step)
        if not values and key not in self._measured:
            return  # nothing reported, nothing to remove: the common case, kept cheap
        values = {name: value for name, value in values.items() if name != CERT_EXPIRY_MEASUREMENT}
        for name in self._measured.get(key, set()) - set(values):
            self._remove(self.measurement, probe, step, name)
        for name, value in values.items():
            self._child(self.measurement, probe, step, name).set(value)
        if values:
            self._measured[key] = set(values)
        else:
            self._measured.pop(key, None)

    def _drop_step(self, probe: str, step: str) -> None:
        """Remove every series of one step."""
        self._set_http(probe, step, None, None)
        self._set_measurements(probe, step, {})
        self._phases.pop((probe, step), None)
        self._measured.pop((probe, step), None)
        self._remove(self.step_success, probe, step)
        self._remove(self.step_duration, probe, step)
        for status in Status:
            self._remove(self.step_runs, probe, step, status.value)

    def missed_run(self, probe: str) -> None:
        """Count a scheduled run that did not start."""
        self.missed.labels(probe=probe).inc()

    def config_reload(self, ok: bool) -> None:
        """Count a SIGHUP reload attempt."""
        self.reloads.labels(result="success" if ok else "failure").inc()

    def sink_error(self, sink: str) -> None:
        """Count a result a sink failed to handle."""
        self.sink_errors.labels(sink=sink).inc()

    def job_error(self, job: str) -> None:
        """Count a failed run of the periodic job called ``job`` (label ``task``)."""
        self.job_errors.labels(task=job).inc()

    def forget(self, probe: str) -> None:
        """Drop a probe's series (it was removed from config on reload)."""
        self._steps.pop(probe, None)
        self._consecutive.pop(probe, None)
        self._shown.pop(probe, None)
        self._expiring = {key for key in self._expiring if key[0] != probe}
        for key in [k for k in (*self._phases, *self._measured) if k[0] == probe]:
            self._phases.pop(key, None)
            self._measured.pop(key, None)
        for gauge in (
            self.probe_success,
            self.probe_duration,
            self.last_run,
            self.consecutive_failures,
            self.interval,
        ):
            self._remove(gauge, probe)
        for status in Status:
            self._remove(self.probe_status, probe, status.value)
            self._remove(self.runs, probe, status.value)
        for outcome in CHECK_RESULTS:
            self._remove(self.probe_checks, probe, outcome)
        self._remove(self.missed, probe)
        for metric in (
            self.step_success,
            self.step_runs,
            self.step_duration,
            self.http_status,
            self.http_phase,
            self.measurement,
            self.cert_expiry,
        ):
            # Phase/measurement children have an extra label; remove every child of this probe.
            for labels in list(_children(metric)):
                if labels[0] == probe:
                    self._remove(metric, *labels)

    def _child(self, metric: Gauge | Counter | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached (see ``_bound``)."""
        key = (id(metric), labels)
        child = self._bound.get(key)
        if child is None:
            child = self._bound[key] = metric.labels(*labels)
        return child

    def _remove(self, metric: Gauge | Counter | Histogram, *labels: str) -> None:
        """Remove a child (if it exists) and forget it in the cache."""
        self._bound.pop((id(metric), labels), None)
        _remove(metric, *labels)


def _children(metric: Gauge | Counter | Histogram) -> list[tuple[str, ...]]:
    # prometheus_client has no public way to list a metric's label sets; _metrics is stable
    # across releases and this runs only on reload.
    return [tuple(labels) for labels in metric._metrics]


def _remove(metric: Gauge | Counter | Histogram, *labels: str) -> None:
    # KeyError: the child never existed, so there is nothing to forget.
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
