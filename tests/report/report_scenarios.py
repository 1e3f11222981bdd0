"""Probe results for the report tests: the seed's July 2025 situation, and the same platform recovered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.results import ProbeResult
from probes.base import Diagnosis, Status, StepResult

T_PREVIOUS = datetime(2025, 7, 22, 10, 30, tzinfo=UTC)
T_CURRENT = datetime(2025, 7, 22, 10, 37, tzinfo=UTC)
GENERATED_AT = datetime(2025, 7, 22, 10, 38, 5, tzinfo=UTC)

ARTIFACT_PATH = "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/synthmon/run-1/payload.bin"
ROUTE_NOT_DEPLOYED = Diagnosis(
    cause="artifact_route_not_deployed",
    hint="artifact route not deployed or not routed through the proxy (mlflow-artifacts answers 404)",
    action="Check the proxy's route for /api/mlflow/api/2.0/mlflow-artifacts/* and confirm MLflow "
    "runs with --serve-artifacts.",
)
REGISTRY_HEALTH_503 = Diagnosis(
    cause="registry_health_failing",
    hint="the registry's health check answers 503 while the proxy still serves",
    action="Check the registry service's health dependencies (its /health detail).",
)

ALB_CHECKS = (
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
)


def _ok(name: str, http: int | None = 200, duration: float = 0.05) -> StepResult:
    return StepResult(name=name, status=Status.PASS, duration_s=duration, http_status=http)


def _run(probe: str, at: datetime, steps: list[StepResult], duration: float) -> ProbeResult:
    return ProbeResult(
        probe=probe,
        kind=probe,
        run_id=f"{probe}-{at:%H%M}",
        started_at=at,
        duration_s=duration,
        status=ProbeResult.status_of(steps),
        steps=tuple(steps),
        environment="prod",
    )


def auth(at: datetime) -> ProbeResult:
    """auth PASS: health, validate, an invalid key rejected."""
    steps = [_ok("health"), _ok("validate", duration=0.3), _ok("rejects_invalid_key", http=401)]
    return _run("auth", at, steps, 0.41)


def alb_health(at: datetime, *, registry_healthy: bool) -> ProbeResult:
    """alb_health: ten checks; registry_health 503 makes it 9/10 and FAIL."""
    steps = []
    for name in ALB_CHECKS:
        if name == "registry_health" and not registry_healthy:
            steps.append(
                StepResult(
                    name=name,
                    status=Status.FAIL,
                    duration_s=0.04,
                    http_status=503,
                    error_class="http_status",
                    message='GET /health answered 503, expected 200: {"status": "unhealthy"}',
                    path="/health",
                    diagnosis=REGISTRY_HEALTH_503,
                )
            )
        else:
            steps.append(_ok(name, http=None if name == "mlflow_client" else 200))
    return _run("alb_health", at, steps, 0.62)


def mlflow_api(at: datetime) -> ProbeResult:
    """mlflow_api PASS: both searches and the experiment check."""
    steps = [_ok("experiments_search"), _ok("registered_models_search"), _ok("experiment")]
    return _run("mlflow_api", at, steps, 0.22)


def artifact_roundtrip(at: datetime, *, routed: bool) -> ProbeResult:
    """artifact_roundtrip: FAIL at upload 404 (route not deployed) with the rest skipped, or PASS."""
    if routed:
        steps = [_ok(n) for n in ("upload", "list", "download", "verify", "delete")]
        return _run("artifact_roundtrip", at, steps, 0.35)
    upload = StepResult(
        name="upload",
        status=Status.FAIL,
        duration_s=0.08,
        http_status=404,
        error_class="http_status",
        message='PUT answered 404, expected 200: {"detail":"Not Found"}',
        path=ARTIFACT_PATH,
        diagnosis=ROUTE_NOT_DEPLOYED,
    )
    skipped = [
        StepResult(name=n, status=Status.SKIPPED, message="skipped: upload failed")
        for n in ("list", "download", "verify", "delete")
    ]
    return _run("artifact_roundtrip", at, [upload, *skipped], 0.09)


def registration(at: datetime, *, routed: bool) -> ProbeResult:
    """registration: FAIL at log_model (same 404) with the rest skipped except cleanup, or PASS."""
    names = ("register", "wait_ready", "load", "predict")
    head = [_ok("set_experiment"), _ok("train", http=None, duration=0.9)]
    if routed:
        steps = [*head, _ok("log_model", duration=1.2), *(_ok(n) for n in names), _ok("cleanup")]
        return _run("registration", at, steps, 3.1)
    log_model = StepResult(
        name="log_model",
        status=Status.FAIL,
        duration_s=0.7,
        http_status=404,
        error_class="MlflowException",
        message="API request to endpoint /api/2.0/mlflow-artifacts/artifacts/... failed with error code 404",
        path=ARTIFACT_PATH,
        diagnosis=ROUTE_NOT_DEPLOYED,
    )
    skipped = [StepResult(name=n, status=Status.SKIPPED, message="skipped: log_model failed") for n in names]
    return _run("registration", at, [*head, log_model, *skipped, _ok("cleanup")], 1.8)


def seed_situation(at: datetime) -> list[ProbeResult]:
    """The July 22 report: auth and MLflow fine, registry health 503, artifacts 404, registration fails."""
    return [
        auth(at),
        alb_health(at, registry_healthy=False),
        mlflow_api(at),
        artifact_roundtrip(at, routed=False),
        registration(at, routed=False),
    ]


def recovered(at: datetime) -> list[ProbeResult]:
    """The same platform after the artifact route and the registry health were fixed."""
    return [
        auth(at),
        alb_health(at, registry_healthy=True),
        mlflow_api(at),
        artifact_roundtrip(at, routed=True),
        registration(at, routed=True),
    ]


def minutes_before(at: datetime, n: int) -> datetime:
    """``at`` minus ``n`` minutes."""
    return at - timedelta(minutes=n)
