"""Diagnosis: every failure signature of the platform contract maps to its cause."""

from __future__ import annotations

import pytest

from monitor.diagnosis import (
    BUILTIN_SIGNATURES,
    CAUSE_TITLES,
    GENERIC_CAUSES,
    MONITOR_CAUSES,
    Signature,
    diagnose,
)
from probes.base import Diagnosis, Status, StepResult


def _step(**kw: object) -> StepResult:
    base: dict[str, object] = {"name": "s", "status": Status.FAIL}
    base.update(kw)
    return StepResult(**base)  # type: ignore[arg-type]


# --- diagnosis: every row of the contract's section 6 --------------------------------------------

SECTION_6 = {
    "artifact_404": (
        _step(
            http_status=404, path="/api/mlflow/api/2.0/mlflow-artifacts/artifacts/x", body_excerpt="Not Found"
        ),
        "artifact_route_not_deployed",
    ),
    "artifacts_disabled_body": (
        _step(
            http_status=503, body_excerpt='{"detail":"Artifact serving is disabled. Run mlflow server with"}'
        ),
        "artifacts_disabled",
    ),
    "artifacts_disabled_code": (
        _step(http_status=503, body_excerpt='{"error":"ARTIFACTS_DISABLED"}'),
        "artifacts_disabled",
    ),
    "max_results_400": (
        _step(
            http_status=400,
            path="/api/2.0/mlflow/experiments/search",
            body_excerpt="INVALID_PARAMETER_VALUE Invalid value 0 for parameter 'max_results'",
        ),
        "missing_max_results",
    ),
    "alb_html_503": (
        _step(
            http_status=503,
            content_type="text/html",
            body_excerpt="<html>503 Service Temporarily Unavailable",
        ),
        "alb_no_healthy_target",
    ),
    "key_invalid_401": (
        _step(http_status=401, body_excerpt='{"detail":"Invalid or expired API key"}'),
        "api_key_rejected",
    ),
    "auth_error_2025": (
        _step(http_status=401, body_excerpt='{"detail":"Authentication service error"}'),
        "auth_upstream_unavailable",
    ),
    "auth_timeout_2025": (
        _step(http_status=401, body_excerpt='{"detail":"Authentication service timeout"}'),
        "auth_upstream_unavailable",
    ),
    "auth_down_2026": (
        _step(http_status=503, body_excerpt='{"detail":"Authentication service unavailable"}'),
        "auth_upstream_unavailable",
    ),
    "admin_required_403": (
        _step(
            http_status=403,
            body_excerpt='{"detail":"Admin access required","error":"REGISTRY_ADMIN_REQUIRED"}',
        ),
        "registry_admin_required",
    ),
    "invalid_host_403": (_step(http_status=403, body_excerpt="Invalid Host header"), "mlflow_invalid_host"),
    "strip_authorization": (
        _step(http_status=401, body_excerpt='{"detail":"API key required"}'),
        "proxy_strips_authorization",
    ),
    "mlflow_502": (
        _step(http_status=502, path="/api/mlflow/api/2.0/mlflow/experiments/search"),
        "mlflow_unreachable",
    ),
    "mlflow_504": (
        _step(http_status=504, path="/api/mlflow/api/2.0/mlflow/experiments/search"),
        "mlflow_timeout",
    ),
    "artifact_put_500": (
        _step(http_status=500, path="/api/mlflow/api/2.0/mlflow-artifacts/artifacts/a.bin"),
        "artifact_store_error",
    ),
}


@pytest.mark.parametrize("case", list(SECTION_6), ids=list(SECTION_6))
def test_contract_section_6_rows_are_diagnosed(case: str) -> None:
    """Each symptom of the contract's failure table maps to its likely cause."""
    step, cause = SECTION_6[case]
    diagnosis = diagnose(step)
    assert diagnosis is not None
    assert diagnosis.cause == cause
    assert diagnosis.hint


def test_config_signatures_win_over_builtins() -> None:
    """A config-supplied row matched first overrides the built-in diagnosis of the same symptom."""
    mine = Signature(cause="waf_block", hint="the WAF blocks us", http_status=403, body_regex="blocked")
    step = _step(http_status=403, body_excerpt="Request blocked by WAF")
    assert diagnose(step, [mine, *BUILTIN_SIGNATURES]).cause == "waf_block"  # type: ignore[union-attr]
    assert diagnose(step, BUILTIN_SIGNATURES).cause == "forbidden"  # type: ignore[union-attr]


def test_signature_conditions_all_must_hold() -> None:
    """A row with several conditions matches only when every one holds (status, probe, step)."""
    sig = Signature(cause="c", hint="h", http_status=500, probe="p", step="upload")
    assert sig.matches(_step(name="upload", http_status=500), probe="p")
    assert not sig.matches(_step(name="upload", http_status=500), probe="other")
    assert not sig.matches(_step(name="list", http_status=500), probe="p")
    assert not sig.matches(_step(name="upload", http_status=502), probe="p")


def test_invalid_signature_regex_is_a_config_error() -> None:
    """A broken regular expression in a signature is rejected when the config is validated."""
    with pytest.raises(ValueError, match="invalid regular expression"):
        Signature(cause="c", hint="h", body_regex="(unclosed")


def test_no_diagnosis_for_unknown_symptom() -> None:
    """A failure no row describes gets no diagnosis rather than a wrong one."""
    assert diagnose(_step(error_class="something_new")) is None


def test_config_row_title_reaches_the_diagnosis() -> None:
    """A config row may name its cause in words; the diagnosis carries that title, built-ins none."""
    mine = Signature(
        cause="vpn_down", hint="h", title="VPN to the data centre down", error_class="connect_error"
    )
    step = _step(error_class="connect_error")
    assert diagnose(step, [mine]) == Diagnosis(
        cause="vpn_down", hint="h", title="VPN to the data centre down"
    )
    builtin = diagnose(step)
    assert builtin is not None
    assert builtin.title == ""


def test_stored_diagnosis_without_title_still_loads() -> None:
    """Steps stored before titles existed load with an empty title; new ones round-trip theirs."""
    old = {"name": "upload", "status": "FAIL", "diagnosis": {"cause": "c", "hint": "h", "action": "a"}}
    assert StepResult.from_dict(old).diagnosis == Diagnosis(cause="c", hint="h", action="a", title="")
    new = _step(diagnosis=Diagnosis(cause="c", hint="h", title="Words"))
    assert StepResult.from_dict(new.to_dict()) == new


def test_a_title_is_not_a_condition_in_config() -> None:
    """A config row with a title but no condition is still refused: it would match every failure."""
    from monitor.config import parse_config
    from monitor.configfile import ConfigError

    text = "environment: t\ndiagnosis:\n  - {cause: c, hint: h, title: Everything}\n"
    with pytest.raises(ConfigError, match="needs at least one condition"):
        parse_config(text, source="config.yaml", env={})
    ok = parse_config(text.replace("}", ", error_class: http_404}"), source="config.yaml", env={})
    assert ok.diagnosis[0].title == "Everything"


# --- the failure paths of every probe kind, and where each one's diagnosis ends ------------------
#
# Built from what the probes emit (every Status.FAIL / Status.ERROR construction in probes/ and
# probes/support/): each HTTP step through probes.support.httpstep (transport classes, unexpected
# statuses, the ALB's HTML 503, capped and mismatching bodies), each probe's own verdicts, the MLflow
# child's exception facts (probes.support.mlflow_child.describe_exception), the isolation wrapper's
# timeout and crash, and the runner's ERROR steps.

# Transport error classes of probes.support.httpstep.classify_transport_error.
HTTP_TRANSPORT = (
    "connect_error",
    "connect_timeout",
    "dns_error",
    "tls_error",
    "connection_reset",
    "protocol_error",
    "read_error",
    "write_error",
    "read_timeout",
    "write_timeout",
    "pool_timeout",
    "timeout",
    "too_many_redirects",
    "transport_error",
)
# Unexpected statuses with an ordinary body (no contract §6 wording in it).
HTTP_STATUSES = (301, 400, 401, 403, 404, 405, 413, 429, 500, 502, 503, 504)
# The error classes the MLflow child gives an exception without an HTTP status.
CLIENT_TRANSPORT = ("timeout", "connect_error", "connection_reset")

ALB_HTML = "<html><head><title>503 Service Temporarily Unavailable</title></head></html>"


def _http_paths(
    step: str, method: str, path: str, *, platform: bool = True, body_check: bool = False
) -> list[tuple[str, StepResult]]:
    """Every failure one HTTP step can report; ``platform``: sent through platform_step (503 split)."""
    out: list[tuple[str, StepResult]] = []
    for error_class in HTTP_TRANSPORT:
        message = f"{method} {path}: {error_class.replace('_', ' ')} after 0.01s"
        out.append((error_class, _step(name=step, error_class=error_class, message=message, path=path)))
    for status in HTTP_STATUSES:
        body, content_type = '{"detail":"something went wrong"}', "application/json"
        out.append(
            (
                f"http_{status}",
                _step(
                    name=step,
                    http_status=status,
                    error_class="http_status",
                    message=f"{method} {path} answered {status}, expected 200",
                    path=path,
                    body_excerpt=body,
                    content_type=content_type,
                ),
            )
        )
    html = _step(
        name=step,
        http_status=503,
        error_class="alb_503" if platform else "http_status",
        message=f"{method} {path} answered 503, expected 200",
        path=path,
        body_excerpt=ALB_HTML,
        content_type="text/html",
    )
    out.append(("alb_html_503", html))
    out.append(
        (
            "body_too_large",
            _step(name=step, http_status=200, error_class="body_too_large", message="big", path=path),
        )
    )
    if body_check:
        out.append(
            (
                "body_mismatch",
                _step(name=step, http_status=200, error_class="body_mismatch", message="shape", path=path),
            )
        )
    return out


def _client_paths(step: str, api_path: str) -> list[tuple[str, StepResult]]:
    """Every failure an MLflow client call reports (probes.support.mlflow_child.describe_exception)."""
    out: list[tuple[str, StepResult]] = []
    for status in HTTP_STATUSES:
        text = f"API request to endpoint {api_path} failed with error code {status} != 200"
        out.append(
            (
                f"client_{status}",
                _step(
                    name=step,
                    http_status=status,
                    error_class="MlflowException",
                    message=text,
                    path=api_path,
                    body_excerpt='{"detail":"something went wrong"}',
                ),
            )
        )
    for error_class in CLIENT_TRANSPORT:
        text = f"HTTPConnectionPool: Max retries exceeded ({error_class})"
        out.append((error_class, _step(name=step, error_class=error_class, message=text, body_excerpt=text)))
    # An exception without status or path (a JSON answer MLflow's client cannot read, ...).
    text = "API request failed: response is not JSON"
    out.append(
        ("no_status", _step(name=step, error_class="MlflowException", message=text, body_excerpt=text))
    )
    return out


MLF = "/api/mlflow/api/2.0/mlflow"
ART = "/api/mlflow/api/2.0/mlflow-artifacts/artifacts"


def failure_paths() -> list[tuple[str, str, str, StepResult]]:
    """``(kind, step, case, step result)`` for every failure path of every probe kind."""
    paths: list[tuple[str, str, str, StepResult]] = []

    def add(kind: str, step: str, cases: list[tuple[str, StepResult]]) -> None:
        paths.extend((kind, step, case, result) for case, result in cases)

    # http: one request against any URL; it knows nothing of what answers there.
    add("http", "request", _http_paths("request", "GET", "/status", platform=False, body_check=True))
    # auth: health, ready, validate (+ its judgement), rejects_invalid_key (+ accepting one).
    add("auth", "health", _http_paths("health", "GET", "/health"))
    add("auth", "ready", _http_paths("ready", "GET", "/ready"))
    validate = "/api/v1/keys/validate"
    add("auth", "validate", _http_paths("validate", "POST", validate))
    for error_class in ("body_mismatch", "key_not_valid", "service_id_mismatch", "scope_missing"):
        add(
            "auth",
            "validate",
            [(error_class, _step(name="validate", http_status=200, error_class=error_class))],
        )
    add("auth", "rejects_invalid_key", _http_paths("rejects_invalid_key", "POST", validate))
    accepts = _step(name="rejects_invalid_key", http_status=200, error_class="accepts_invalid_key")
    add("auth", "rejects_invalid_key", [("accepts_invalid_key", accepts)])
    # alb_health: the shipped checks, a custom one, the certificate steps.
    for name, path in (
        ("auth_health", "/health"),
        ("auth_root", "/"),
        ("auth_validate", validate),
        ("registry_health", "/health"),
        ("registry_api_health", "/api/health"),
        ("mlflow_ui", "/mlflow/"),
        ("mlflow_api_proxy", f"{MLF}/experiments/search"),
        ("isolation_registry_has_no_auth_api", validate),
        ("isolation_auth_has_no_mlflow", "/mlflow/"),
    ):
        cases = _http_paths(name, "GET", path)
        if name.startswith("isolation_"):
            # Expected 404: the failing answers are the others, a 200 first.
            cases.append(
                ("http_200", _step(name=name, http_status=200, error_class="http_status", path=path))
            )
        add("alb_health", name, cases)
    add("alb_health", "custom_check", _http_paths("custom_check", "GET", "/x", body_check=True))
    add("alb_health", "mlflow_client", _client_paths("mlflow_client", f"{MLF}/experiments/search"))
    for name in ("cert_auth", "cert_registry"):
        add(
            "alb_health",
            name,
            [
                (c, _step(name=name, error_class=c, message=f"certificate ({c})"))
                for c in ("tls_error", "connect_error")
            ]
            + [("timeout", _step(name=name, error_class="timeout", message="could not read (TimeoutError)"))],
        )
    # mlflow_api: two searches with shape checks, the experiment (get, create, restore), the client.
    add(
        "mlflow_api",
        "experiments_search",
        _http_paths("experiments_search", "GET", f"{MLF}/experiments/search", body_check=True),
    )
    # registered_models_search runs after experiments_search passed: its 404 is the registry's.
    models = [
        (case, s.with_(error_class="model_registry_not_served") if s.http_status == 404 else s)
        for case, s in _http_paths(
            "registered_models_search", "GET", f"{MLF}/registered-models/search", body_check=True
        )
    ]
    add("mlflow_api", "registered_models_search", models)
    for api in ("experiments/get-by-name", "experiments/create", "experiments/restore"):
        add("mlflow_api", "experiment", _http_paths("experiment", "GET", f"{MLF}/{api}", body_check=True))
    add(
        "mlflow_api",
        "experiment",
        [("experiment_deleted", _step(name="experiment", http_status=200, error_class="experiment_deleted"))],
    )
    add("mlflow_api", "client_search", _client_paths("client_search", f"{MLF}/experiments/search"))
    # artifact_roundtrip: upload, list (+ its judgement), download (404 after the upload: lost),
    # verify, delete.
    obj = f"{ART}/synthmon/run/payload.bin"
    add("artifact_roundtrip", "upload", _http_paths("upload", "PUT", obj))
    add("artifact_roundtrip", "list", _http_paths("list", "GET", ART))
    for error_class in ("artifact_not_listed", "checksum_mismatch"):
        add(
            "artifact_roundtrip",
            "list",
            [(error_class, _step(name="list", http_status=200, error_class=error_class, path=ART))],
        )
    download = [
        (case, s.with_(error_class="artifact_missing") if s.http_status == 404 else s)
        for case, s in _http_paths("download", "GET", obj)
    ]
    add("artifact_roundtrip", "download", download)
    add(
        "artifact_roundtrip",
        "verify",
        [("checksum_mismatch", _step(name="verify", error_class="checksum_mismatch"))],
    )
    add("artifact_roundtrip", "delete", _http_paths("delete", "DELETE", f"{ART}/synthmon/run"))
    # registration: the MLflow client through every stage; the child's verdicts and refinements.
    for name, api in (
        ("set_experiment", f"{MLF}/experiments/get-by-name"),
        ("log_model", f"{MLF}/runs/create"),
        ("register", f"{MLF}/model-versions/create"),
        ("wait_ready", f"{MLF}/model-versions/get"),
        ("load", f"{MLF}/model-versions/get-download-uri"),
        ("predict", f"{MLF}/model-versions/get"),
        ("cleanup", f"{MLF}/runs/delete"),
    ):
        add("registration", name, _client_paths(name, api))
        budget = _step(
            name=name,
            error_class="timeout",
            message=f"{name} not started: the run's budget is spent (timeout)",
        )
        add("registration", name, [("budget_spent", budget)])
    upload = [
        (f"upload_{case}", s.with_(error_class="artifact_upload_failed", path=f"{ART}/1/model/model.pkl"))
        for case, s in _client_paths("log_model", f"{ART}/1/model/model.pkl")
        if s.error_class not in CLIENT_TRANSPORT
    ]
    add("registration", "log_model", upload)
    add(
        "registration",
        "log_model",
        [
            (f"upload_{c}", s)
            for c, s in _client_paths("log_model", f"{ART}/1/model/model.pkl")
            if s.error_class in CLIENT_TRANSPORT
        ],
    )
    load = [
        (f"files_{case}", s.with_(error_class="artifact_missing" if s.http_status == 404 else s.error_class))
        for case, s in _client_paths("load", f"{ART}/1/model/MLmodel")
    ]
    add("registration", "load", load)
    # The probes' own verdicts without an HTTP exchange of their own, and an exception of the
    # loaded model while it predicts (it reads the platform's data: FAIL).
    for kind, step, error_class in (
        ("registration", "load", "artifact_unreadable"),
        ("registration", "set_experiment", "experiment_deleted"),
        ("registration", "wait_ready", "not_ready"),
        ("registration", "predict", "prediction_mismatch"),
        ("registration", "predict", "ValueError"),
    ):
        add(kind, step, [(error_class, _step(name=step, error_class=error_class))])
    # The monitor's own failures (ERROR): the child's, the isolation wrapper's, the runner's.
    for kind, step, error_class in (
        ("registration", "train", "ImportError"),
        ("registration", "load", "OSError"),
        ("mlflow_api", "client_search", "subprocess_crash"),
        ("alb_health", "mlflow_client", "subprocess_crash"),
        ("registration", "run", "deadline_exceeded"),
        ("registration", "run", "IsolationCrash"),
        ("auth", "run", "MissingSecretError"),
        ("auth", "run", "no_steps"),
    ):
        add(kind, step, [(error_class, _step(name=step, status=Status.ERROR, error_class=error_class))])
    # The isolation wrapper's own timeout of a client check (probes.support.mlflow_client).
    for kind, step in (("mlflow_api", "client_search"), ("alb_health", "mlflow_client")):
        text = "MLflow client search_experiments still running after 20.0s (timeout)"
        paths.append((kind, step, "isolation_timeout", _step(name=step, error_class="timeout", message=text)))
    return paths


#: Failure paths of the platform kinds that can only reach a generic cause, and why. A new path
#: ending generic fails the test below until it gets a specific row (or is listed here, argued).
GENERIC_ONLY: dict[tuple[str, str, str], str] = {}

#: Kinds and steps that know nothing of the platform: every failure is told by how it failed.
GENERIC_BY_DESIGN = {("http", "request"), ("alb_health", "custom_check")}


def _cause(step: StepResult) -> str | None:
    diagnosis = diagnose(step)
    return diagnosis.cause if diagnosis is not None else None


def test_every_failure_path_gets_a_diagnosis() -> None:
    """No failure of any probe kind ends undiagnosed; the monitor's own (ERROR) ones say so."""
    paths = failure_paths()
    assert len(paths) > 400
    undiagnosed = [(k, s, c) for k, s, c, r in paths if _cause(r) is None]
    assert undiagnosed == []
    for kind, step, case, result in paths:
        if result.status is Status.ERROR:
            assert _cause(result) in MONITOR_CAUSES, (kind, step, case)
        else:
            assert _cause(result) not in MONITOR_CAUSES, (kind, step, case)


def test_only_the_listed_failure_paths_end_at_a_generic_cause() -> None:
    """Platform probes' failures get a cause saying what is broken; generic ones only where listed."""
    generic = {
        (k, s, c): _cause(r)
        for k, s, c, r in failure_paths()
        if r.status is Status.FAIL and (k, s) not in GENERIC_BY_DESIGN and _cause(r) in GENERIC_CAUSES
    }
    assert set(generic) == set(GENERIC_ONLY), generic
    assert len(GENERIC_ONLY) <= 5


def test_generic_kinds_never_borrow_a_platform_component() -> None:
    """The http kind and a custom ALB check know nothing of the platform: no cause names a component
    of it by their step (only symptoms the contract names, e.g. the ALB's own 503 page)."""
    stage_causes = {sig.cause for sig in BUILTIN_SIGNATURES if sig.step_regex is not None}
    for kind, step, case, result in failure_paths():
        if (kind, step) in GENERIC_BY_DESIGN:
            assert _cause(result) not in stage_causes, (kind, step, case, _cause(result))


def _probe_step(name: str, **kw: object) -> StepResult:
    return _step(name=name, **kw)


#: What the probes know, and the cause it leads to: (step as the probe reports it, expected cause).
KNOWN = {
    "seed_upload_404": (
        _probe_step(
            "upload", http_status=404, error_class="http_status", path=f"{ART}/synthmon/r/payload.bin"
        ),
        "artifact_route_not_deployed",
    ),
    "log_model_upload_404_after_run_created": (
        _probe_step(
            "log_model", http_status=404, error_class="artifact_upload_failed", message="error code 404"
        ),
        "artifact_route_not_deployed",
    ),
    "log_model_run_create_404": (
        _probe_step("log_model", http_status=404, error_class="MlflowException", path=f"{MLF}/runs/create"),
        "mlflow_api_not_routed",
    ),
    "download_404_after_upload": (
        _probe_step(
            "download", http_status=404, error_class="artifact_missing", path=f"{ART}/synthmon/r/p.bin"
        ),
        "artifact_missing_after_upload",
    ),
    "load_404_after_log_model": (
        _probe_step("load", http_status=404, error_class="artifact_missing", path=f"{ART}/1/model/MLmodel"),
        "artifact_missing_after_upload",
    ),
    "seed_registry_health_503": (
        _probe_step(
            "registry_health",
            http_status=503,
            error_class="http_status",
            path="/health",
            content_type="application/json",
            body_excerpt='{"status":"unhealthy","checks":{"redis":"error"}}',
        ),
        "registry_unhealthy",
    ),
    "auth_alb_502_is_not_mlflow": (
        _probe_step("auth_health", http_status=502, error_class="http_status", path="/health"),
        "auth_service_unhealthy",
    ),
    "auth_own_503_is_not_the_registrys_upstream": (
        _probe_step(
            "health",
            http_status=503,
            error_class="http_status",
            path="/health",
            body_excerpt='{"status":"unhealthy","service":"auth-service"}',
        ),
        "auth_service_unhealthy",
    ),
    "registry_503_auth_upstream": (
        _probe_step(
            "experiments_search",
            http_status=503,
            error_class="http_status",
            path=f"{MLF}/experiments/search",
            body_excerpt='{"detail":"Authentication service unavailable"}',
        ),
        "auth_upstream_unavailable",
    ),
    "isolation_answered_200": (
        _probe_step("isolation_registry_has_no_auth_api", http_status=200, error_class="http_status"),
        "registry_alb_serves_auth_api",
    ),
    "isolation_alb_html_503": (
        _probe_step(
            "isolation_auth_has_no_mlflow", http_status=503, error_class="alb_503", body_excerpt=ALB_HTML
        ),
        "alb_no_healthy_target",
    ),
    "cert_does_not_verify": (_probe_step("cert_auth", error_class="tls_error"), "certificate_invalid"),
    "auth_refused": (_probe_step("health", error_class="connect_error"), "auth_service_unreachable"),
    "registry_refused": (
        _probe_step("experiments_search", error_class="connect_error"),
        "registry_unreachable",
    ),
    "registration_budget_spent": (
        _probe_step(
            "log_model", error_class="timeout", message="log_model not started: budget spent (timeout)"
        ),
        "mlflow_slow",
    ),
    "registry_404_after_experiments_answered": (
        _probe_step(
            "registered_models_search",
            http_status=404,
            error_class="model_registry_not_served",
            path=f"{MLF}/registered-models/search",
        ),
        "model_registry_unavailable",
    ),
    "delete_not_allowed": (
        _probe_step("delete", http_status=405, error_class="http_status", path=f"{ART}/synthmon/r"),
        "artifact_delete_failing",
    ),
    "upload_too_large_for_proxy": (
        _probe_step("upload", http_status=413, error_class="http_status", path=f"{ART}/synthmon/r/p.bin"),
        "artifact_upload_rejected",
    ),
    "key_is_valid_false": (
        _probe_step("validate", http_status=200, error_class="key_not_valid"),
        "api_key_rejected",
    ),
    "experiment_deleted": (
        _probe_step("experiment", error_class="experiment_deleted"),
        "synthetic_experiment_deleted",
    ),
    "run_cut_at_deadline": (
        _probe_step("run", status=Status.ERROR, error_class="deadline_exceeded"),
        "probe_deadline_exceeded",
    ),
    "child_disk_full_is_the_monitors": (
        _probe_step("log_model", status=Status.ERROR, error_class="OSError", message="No space left"),
        "monitor_error",
    ),
}


@pytest.mark.parametrize("case", list(KNOWN), ids=list(KNOWN))
def test_what_the_probe_knows_names_what_is_broken(case: str) -> None:
    """Earlier steps' outcomes and the step's component turn a bare symptom into its real cause."""
    step, cause = KNOWN[case]
    assert _cause(step) == cause


@pytest.mark.parametrize(
    "error_class",
    [
        "connection_reset",
        "broken_pipe",
        "connection_closed",
        "connect_error",
        "connect_timeout",
        "dns_error",
        "tls_error",
        "read_timeout",
        "write_timeout",
        "pool_timeout",
        "protocol_error",
        "local_resource_error",
    ],
)
def test_every_transport_class_of_the_http_step_is_diagnosed(error_class: str) -> None:
    """Each class probes.support.httpstep gives a transport failure maps to a cause (generic or not)."""
    status = Status.ERROR if error_class == "local_resource_error" else Status.FAIL
    step = StepResult(name="request", status=status, error_class=error_class, message=f"GET /: {error_class}")
    found = diagnose(step)
    assert found is not None
    assert found.cause in CAUSE_TITLES
