"""The two platform states the status page is checked in, stored as the daemon stores them.

- healthy: the five shipped probes, every run PASS;
- seed (the incident report's outage): auth and mlflow_api PASS; alb_health fails one check
  (registry_health 503); artifact_roundtrip fails at upload and registration at log_model, both
  diagnosed ``artifact_route_not_deployed``; one open incident owned by artifact_roundtrip with the
  other two as members.

Runs go through ``SqlHistoryStore.append_runs`` and the incident rows through the alerting store's
``transition``, so the page reads exactly what a daemon would have written. Diagnoses come from
the built-in signatures (``monitor.diagnosis.diagnose``), as the runner attaches them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from monitor.alerting.incidents import IncidentState, Phase
from monitor.diagnosis import diagnose
from monitor.results import ProbeResult
from probes.base import Status, StepResult
from tests.history.history_helpers import FullStore

STEPS: Mapping[str, tuple[str, ...]] = {
    "auth": ("health", "ready", "validate", "rejects_invalid_key"),
    "alb_health": ("auth_health", "registry_health", "registry_api_health", "mlflow_ui", "mlflow_api_proxy"),
    "mlflow_api": ("experiments_search", "registered_models_search", "experiment"),
    "artifact_roundtrip": ("upload", "list", "download", "verify", "delete"),
    "registration": ("set_experiment", "train", "log_model", "register", "wait_ready", "cleanup"),
}

#: Runs stored per probe (more than a bar shows, so the bar is full) and, in the seed state, how
#: many of the newest runs fail.
RUNS = 40
FAILING = 6
INTERVAL_S = 60

ARTIFACT_PATH = "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/synthmon/roundtrip.txt"
#: A full upload message, longer than any table cell (it must show whole), ending in a word a test
#: can find, and carrying markup that must show as text.
UPLOAD_MESSAGE = (
    "PUT " + ARTIFACT_PATH + " answered 404 Not Found, expected 200; the proxy has no route for "
    "mlflow-artifacts and answered with its default page <b>not found</b> after 0.02 s; "
    "every later step was skipped: list, download, verify, delete (end-of-message)"
)
INCIDENT_ID = "artifact_roundtrip-seedrun"


def _failing(probe: str, step: str, at_s: float) -> StepResult:
    if probe == "alb_health":
        raw = StepResult(
            name=step,
            status=Status.FAIL,
            duration_s=0.01,
            http_status=503,
            error_class="http_status",
            message="GET /health on the registry ALB answered 503, expected 200",
            path="/health",
            body_excerpt="503 Service Temporarily Unavailable",
        )
    elif probe == "artifact_roundtrip":
        raw = StepResult(
            name=step,
            status=Status.FAIL,
            duration_s=0.02,
            http_status=404,
            error_class="http_status",
            message=UPLOAD_MESSAGE,
            path=ARTIFACT_PATH,
        )
    else:
        raw = StepResult(
            name=step,
            status=Status.FAIL,
            duration_s=1.5,
            http_status=404,
            error_class="http_status",
            message="mlflow.log_model: upload of MLmodel answered 404 (artifact route)",
            path="/api/mlflow/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/model/MLmodel",
        )
    return raw.with_(diagnosis=diagnose(raw, probe=probe))


def run(probe: str, at: datetime, fail_at: str | None = None) -> ProbeResult:
    """A run of ``probe`` at ``at``: every step PASS, or FAIL at ``fail_at`` (later steps SKIPPED,
    except for alb_health whose checks are independent)."""
    steps = []
    failed = False
    for i, name in enumerate(STEPS[probe]):
        if name == fail_at:
            steps.append(_failing(probe, name, at.timestamp()))
            failed = True
        elif failed and probe != "alb_health":
            steps.append(StepResult(name=name, status=Status.SKIPPED, message=f"skipped: {fail_at} failed"))
        else:
            steps.append(
                StepResult(name=name, status=Status.PASS, duration_s=0.05 + i / 100, http_status=200)
            )
    return ProbeResult(
        probe=probe,
        kind=probe,
        run_id=f"{probe}-{int(at.timestamp())}",
        started_at=at,
        duration_s=round(sum(s.duration_s for s in steps), 6),
        status=ProbeResult.status_of(steps),
        steps=tuple(steps),
        environment="staging",
    )


SEED_FAILURES: Mapping[str, str] = {
    "alb_health": "registry_health",
    "artifact_roundtrip": "upload",
    "registration": "log_model",
}


def fill_healthy(store: FullStore, now: datetime) -> None:
    """``RUNS`` passing runs per probe, the newest one interval before ``now``."""
    store.append_runs(
        [run(probe, now - timedelta(seconds=INTERVAL_S * (RUNS - i))) for i in range(RUNS) for probe in STEPS]
    )


def fill_seed(store: FullStore, now: datetime) -> datetime:
    """The seed outage: the newest ``FAILING`` runs of the three affected probes fail, and their
    incident is open. Returns when the incident opened."""
    results = []
    for i in range(RUNS):
        at = now - timedelta(seconds=INTERVAL_S * (RUNS - i))
        for probe in STEPS:
            failing = i >= RUNS - FAILING
            results.append(run(probe, at, SEED_FAILURES.get(probe) if failing else None))
    store.append_runs(results)
    opened = now - timedelta(seconds=INTERVAL_S * (FAILING - 1))
    for probe in ("artifact_roundtrip", "registration", "alb_health"):
        state = IncidentState(
            probe,
            phase=Phase.OPEN,
            failures=FAILING,
            incident_id=INCIDENT_ID,
            incident_probe="artifact_roundtrip",
            since=now - timedelta(seconds=INTERVAL_S * FAILING),
            opened_at=opened,
            notified=True,
            signature=f"{SEED_FAILURES[probe]}|http_status||",
            worst_status="FAIL",
            last_status="FAIL",
        )
        store.transition(probe, opened, lambda view, state=state: (state, []), ())
    return opened
