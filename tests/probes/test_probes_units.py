"""Unit tests of the probes' pure parts and their parsing, with fakes and MockTransport."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest
from probes_helpers import DEFAULT_CONFIG, FixedClock, make_ctx, mock

from monitor.config import load_config
from monitor.diagnosis import BUILTIN_SIGNATURES, Signature, diagnose
from probes import PROBE_KINDS
from probes._mlflow_child import MaskingStream, describe_exception, masked
from probes._platform import classify_503, invalid_key, mask
from probes._registration_child import Candidate, select_expired
from probes.alb_health import DEFAULT_CHECKS, AlbHealthOptions, summarize
from probes.artifact_roundtrip import (
    ArtifactRoundtripOptions,
    ArtifactRoundtripProbe,
    listed_size,
    verify_payload,
)
from probes.auth import AuthOptions, AuthProbe, judge_validation
from probes.base import Status, StepResult
from probes.mlflow_api import MlflowApiOptions, MlflowApiProbe, list_shape_problem


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
    "mlflow_502": (_step(http_status=502), "mlflow_unreachable"),
    "mlflow_504": (_step(http_status=504), "mlflow_timeout"),
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


# --- auth ----------------------------------------------------------------------------------------

GOOD = {"is_valid": True, "service_id": "platform", "scopes": ["read", "write"], "user_id": "admin"}
VALIDATION_CASES = {
    "valid": (GOOD, Status.PASS, None),
    "not_object": ([1, 2], Status.FAIL, "body_mismatch"),
    "is_valid_false": ({**GOOD, "is_valid": False}, Status.FAIL, "body_mismatch"),
    "wrong_service": ({**GOOD, "service_id": "ml-platform"}, Status.FAIL, "service_id_mismatch"),
    "missing_service": (
        {k: v for k, v in GOOD.items() if k != "service_id"},
        Status.FAIL,
        "service_id_mismatch",
    ),
    "missing_scope": ({**GOOD, "scopes": ["read"]}, Status.FAIL, "scope_missing"),
}


@pytest.mark.parametrize("case", list(VALIDATION_CASES), ids=list(VALIDATION_CASES))
def test_judge_validation(case: str) -> None:
    """A 200 from /keys/validate passes only with is_valid, the expected service_id and all scopes."""
    doc, status, error_class = VALIDATION_CASES[case]
    step = judge_validation(StepResult(name="validate", status=Status.PASS), doc, AuthOptions())
    assert (step.status, step.error_class) == (status, error_class)


async def test_auth_that_accepts_any_key_is_a_security_fail() -> None:
    """An auth service that validates a deliberately invalid key fails rejects_invalid_key, diagnosed."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/validate"):
            return httpx.Response(200, json=GOOD)
        return httpx.Response(200, json={"status": "ok"})

    ctx = make_ctx(mock(handler))
    async with ctx.http:
        steps = {s.name: s for s in await AuthProbe("auth", AuthOptions()).run(ctx)}
    assert steps["validate"].status is Status.PASS
    bad = steps["rejects_invalid_key"]
    assert (bad.status, bad.error_class) == (Status.FAIL, "accepts_invalid_key")
    assert diagnose(bad).cause == "auth_accepts_invalid_key"  # type: ignore[union-attr]


async def test_auth_sends_bearer_and_service_id() -> None:
    """validate sends the key as Bearer and the configured service_id; the invalid key is another one."""
    seen: list[tuple[str, dict[str, object]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/validate"):
            seen.append((request.headers["authorization"], json.loads(request.content)))
            ok = request.headers["authorization"] == "Bearer " + "hk_test_" + "x" * 32
            return httpx.Response(
                200 if ok else 401, json=GOOD if ok else {"detail": "API key not found or invalid"}
            )
        return httpx.Response(200)

    ctx = make_ctx(mock(handler))
    async with ctx.http:
        steps = await AuthProbe("auth", AuthOptions()).run(ctx)
    assert all(s.status is Status.PASS for s in steps), steps
    assert seen[0] == ("Bearer " + "hk_test_" + "x" * 32, {"service_id": "platform"})
    assert seen[1][0] != seen[0][0]


def test_invalid_key_is_well_formed_and_fresh() -> None:
    """The deliberately invalid key has the platform's shape and differs on every call."""
    a, b = invalid_key(), invalid_key()
    assert a != b
    assert a.startswith("hk_test_")
    assert len(a) == len("hk_test_") + 32


def test_mask_shows_only_prefix_and_suffix() -> None:
    """A key is shown as hk_live_ch...cOWL at most."""
    key = "hk_live_ch" + "y" * 18 + "cOWL"
    assert mask(key) == "hk_live_ch...cOWL"


# --- alb_health -------------------------------------------------------------------------------


def test_alb_html_503_is_told_from_application_503() -> None:
    """An HTML 503 is the ALB's (alb_503); a JSON 503 is the application's and keeps http_status."""
    base = StepResult(name="x", status=Status.FAIL, http_status=503, error_class="http_status", message="m")
    alb = classify_503(
        base.with_(content_type="text/html", body_excerpt="503 Service Temporarily Unavailable")
    )
    app = classify_503(base.with_(content_type="application/json", body_excerpt='{"status":"unhealthy"}'))
    assert alb.error_class == "alb_503"
    assert "no healthy target" in alb.message
    assert app.error_class == "http_status"
    assert "application 503" in app.message


def test_summary_counts_passed_checks() -> None:
    """The summary step says N/M passed, names the failing checks and takes the worst status."""
    checks = [StepResult(name=f"c{i}", status=Status.PASS) for i in range(9)]
    checks.append(StepResult(name="registry_health", status=Status.FAIL))
    summary = summarize(checks)
    assert summary.status is Status.FAIL
    assert summary.message.startswith("9/10 checks passed; failing: registry_health")
    assert summary.measurements == {"checks_passed": 9.0, "checks_total": 10.0}


def test_default_checks_are_the_contracts_ten_and_config_yaml_lists_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The built-in list has the incident's 10 checks, and config.yaml spells out the same list."""
    assert len(DEFAULT_CHECKS) == 10
    config = load_config(DEFAULT_CONFIG, env={"SYNTHMON_API_KEY": "hk_test_" + "x" * 32})
    options = config.probe("alb_health").options
    assert isinstance(options, AlbHealthOptions)
    assert options.checks == DEFAULT_CHECKS
    proxy = next(c for c in DEFAULT_CHECKS if c.name == "mlflow_api_proxy")
    assert proxy.params == {"max_results": "1"}


def test_config_yaml_declares_dependencies_on_auth() -> None:
    """mlflow_api, artifact_roundtrip and registration depend on auth; every kind is registered."""
    config = load_config(DEFAULT_CONFIG, env={"SYNTHMON_API_KEY": "hk_test_" + "x" * 32})
    deps = {p.name: p.depends_on for p in config.probes}
    assert deps == {
        "auth": [],
        "alb_health": [],
        "mlflow_api": ["auth"],
        "artifact_roundtrip": ["auth"],
        "registration": ["auth"],
    }
    assert {p.kind for p in config.probes} <= set(PROBE_KINDS)
    assert PROBE_KINDS["registration"].isolated is True


# --- mlflow_api ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({}, None),
        ({"experiments": [{"experiment_id": "0", "name": "Default"}]}, None),
        ({"experiments": {"a": 1}}, "'experiments' is not a list"),
        ({"experiments": [{"name": "x"}]}, "an entry of 'experiments' lacks experiment_id, name"),
        ([], "body is not a JSON object"),
    ],
    ids=["empty_is_fine", "valid", "not_list", "missing_key", "not_object"],
)
def test_list_shape(doc: object, problem: str | None) -> None:
    """MLflow omits empty lists (fine); a wrong type or a missing key is a shape problem."""
    assert list_shape_problem(doc, "experiments", ("experiment_id", "name")) == problem


async def test_mlflow_api_creates_synthetic_experiment_with_tag_and_sends_max_results() -> None:
    """A missing experiment is created tagged synthmon.synthetic=true; searches always send max_results."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        path = request.url.path
        if path.endswith("/experiments/search") or path.endswith("/registered-models/search"):
            if "max_results" not in request.url.params:
                return httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE"})
            return httpx.Response(200, json={})
        if path.endswith("/get-by-name"):
            return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST"})
        if path.endswith("/experiments/create"):
            return httpx.Response(200, json={"experiment_id": "7"})
        return httpx.Response(404)

    ctx = make_ctx(mock(handler))
    async with ctx.http:
        steps = await MlflowApiProbe("m", MlflowApiOptions(client_search=False)).run(ctx)
    assert [s.status for s in steps] == [Status.PASS] * 3
    create = next(r for r in calls if r.url.path.endswith("/create"))
    assert json.loads(create.content) == {
        "name": "synthmon-synthetic",
        "tags": [{"key": "synthmon.synthetic", "value": "true"}],
    }
    assert all(r.headers["authorization"].startswith("Bearer hk_test_") for r in calls)


async def test_mlflow_api_skips_after_first_failure() -> None:
    """After experiments_search fails, the later steps are SKIPPED rather than failed again."""
    ctx = make_ctx(mock(lambda r: httpx.Response(403, json={"error": "REGISTRY_ADMIN_REQUIRED"})))
    async with ctx.http:
        steps = await MlflowApiProbe("m", MlflowApiOptions()).run(ctx)
    assert [s.status for s in steps] == [Status.FAIL, Status.SKIPPED, Status.SKIPPED, Status.SKIPPED]


# --- artifact_roundtrip -------------------------------------------------------------------------


class FakeArtifactStore:
    """An in-memory artifact route for MockTransport; ``corrupt`` flips the downloaded bytes."""

    def __init__(self, corrupt: bool = False) -> None:
        self.objects: dict[str, bytes] = {}
        self.corrupt = corrupt
        self.deleted: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        prefix = "/api/mlflow/api/2.0/mlflow-artifacts/artifacts"
        rel = request.url.path.removeprefix(prefix).lstrip("/")
        if request.method == "PUT":
            self.objects[rel] = request.content
            return httpx.Response(200, json={})
        if request.method == "DELETE":
            self.deleted.append(rel)
            self.objects = {k: v for k, v in self.objects.items() if not k.startswith(rel)}
            return httpx.Response(200, json={})
        if not rel:
            folder = request.url.params["path"]
            files = [
                {"path": k.rsplit("/", 1)[-1], "is_dir": False, "file_size": str(len(v))}
                for k, v in self.objects.items()
                if k.startswith(folder + "/")
            ]
            return httpx.Response(200, json={"files": files})
        body = self.objects[rel]
        return httpx.Response(200, content=bytes(b ^ 0xFF for b in body) if self.corrupt else body)


async def test_artifact_roundtrip_passes_and_measures_throughput() -> None:
    """A faithful store passes all five steps, with upload/download throughput measured."""
    store = FakeArtifactStore()
    ctx = make_ctx(mock(store), run_id="run-1")
    async with ctx.http:
        steps = await ArtifactRoundtripProbe("a", ArtifactRoundtripOptions(payload_bytes=4096)).run(ctx)
    assert [(s.name, s.status) for s in steps] == [
        (n, Status.PASS) for n in ("upload", "list", "download", "verify", "delete")
    ]
    assert steps[0].measurements["upload_bytes_per_second"] > 0
    assert steps[2].measurements["download_bytes_per_second"] > 0
    assert store.deleted == ["synthmon/run-1"]
    assert store.objects == {}


async def test_artifact_is_deleted_even_when_verify_fails() -> None:
    """Corrupted downloads fail verify with checksum_mismatch, and the object is still deleted."""
    store = FakeArtifactStore(corrupt=True)
    ctx = make_ctx(mock(store))
    async with ctx.http:
        steps = {s.name: s for s in await ArtifactRoundtripProbe("a", ArtifactRoundtripOptions()).run(ctx)}
    assert (steps["verify"].status, steps["verify"].error_class) == (Status.FAIL, "checksum_mismatch")
    assert steps["delete"].status is Status.PASS
    assert store.objects == {}


def test_verify_payload_and_listed_size() -> None:
    """verify compares size and SHA-256; list sizes arrive as strings (int64 in proto JSON)."""
    data = b"abc" * 100
    assert verify_payload("verify", data, data).status is Status.PASS
    assert verify_payload("verify", data, data[:-1]).error_class == "checksum_mismatch"
    assert hashlib.sha256(data).hexdigest()[:12] in verify_payload("verify", data, data).message
    assert listed_size({"files": [{"path": "payload.bin", "file_size": "300"}]}, "payload.bin") == 300
    assert listed_size({"files": []}, "payload.bin") is None
    assert listed_size("garbage", "payload.bin") is None


# --- registration: the sweep decision and the child's error facts --------------------------------

NOW_MS = int(datetime(2026, 7, 1, tzinfo=UTC).timestamp() * 1000)


def test_sweep_never_selects_untagged_or_young_objects() -> None:
    """Only objects tagged synthetic=true, older than the TTL and not this run's own are swept."""
    hour = 3600 * 1000
    candidates = [
        Candidate("run", "old-tagged", NOW_MS - 2 * hour, {"synthmon.synthetic": "true"}),
        Candidate("run", "old-untagged", NOW_MS - 2 * hour, {}),
        Candidate("run", "old-tag-false", NOW_MS - 2 * hour, {"synthmon.synthetic": "false"}),
        Candidate("run", "young-tagged", NOW_MS - 60 * 1000, {"synthmon.synthetic": "true"}),
        Candidate("run", "own", NOW_MS - 2 * hour, {"synthmon.synthetic": "true"}),
    ]
    chosen = select_expired(candidates, tag="synthmon.synthetic", now_ms=NOW_MS, ttl_s=3600, keep=["own"])
    assert [c.ident for c in chosen] == ["old-tagged"]


def test_describe_exception_reads_the_seed_404() -> None:
    """The MLflow client's upload error yields status 404 and the artifact path, which diagnosis maps."""
    import requests

    response = requests.Response()
    response.status_code = 404
    response.url = "https://registry.example/api/mlflow/api/2.0/mlflow-artifacts/artifacts/1/m/model.pkl"
    response._content = b"Not Found"
    exc = requests.HTTPError(f"404 Client Error: Not Found for url: {response.url}", response=response)
    info = describe_exception(exc, [])
    assert (info["http_status"], info["path"]) == (
        404,
        "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/1/m/model.pkl",
    )
    step = StepResult.from_dict({"name": "log_model", "status": "FAIL", **info})
    assert diagnose(step).cause == "artifact_route_not_deployed"  # type: ignore[union-attr]


def test_child_output_masks_the_key() -> None:
    """Exception text and everything written to the child's stderr have the key replaced."""
    import io

    key = "hk_test_" + "k" * 32
    info = describe_exception(RuntimeError(f"failed with token {key}"), [key])
    assert key not in json.dumps(info)
    sink = io.StringIO()
    MaskingStream(sink, [key]).write(f"Authorization: Bearer {key}\n")
    assert key not in sink.getvalue()
    assert masked(key, [key]) == "***"


def test_daemon_side_never_imports_mlflow() -> None:
    """Importing the daemon, the CLI and every probe module leaves mlflow unimported."""
    code = (
        "import sys, monitor.cli, monitor.app, probes, probes.registration, probes.mlflow_api;"
        "sys.exit(1 if any(m == 'mlflow' or m.startswith('mlflow.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=120).returncode == 0


def test_fixed_clock_drives_registration_payload_time() -> None:
    """The registration payload's 'now' (the sweep's reference) comes from the context's clock."""
    from probes.registration import RegistrationOptions, RegistrationProbe

    clock = FixedClock(datetime(2026, 7, 1, tzinfo=UTC))
    ctx = make_ctx(None, clock=clock)
    payload = RegistrationProbe("r", RegistrationOptions()).payload(ctx)
    assert payload["now_ms"] == NOW_MS
    assert payload["api_key"].startswith("hk_test_")
