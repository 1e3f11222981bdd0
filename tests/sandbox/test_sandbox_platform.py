"""The sandbox platform against real processes on loopback: keys, routes, and every fault (plain httpx).

One sandbox for the session (``sandbox`` fixture); ``faults`` resets it to healthy around each test.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox import FAULTS, FaultControl, FaultControlError, Sandbox, UnknownFaultError
from sandbox.settings import KEY_PREFIX

pytestmark = pytest.mark.sandbox

SEARCH = "/api/mlflow/api/2.0/mlflow/experiments/search?max_results=5"
ARTIFACT = "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/0/sandbox-tests/{name}"
VALIDATE = "/api/v1/keys/validate"


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """A plain HTTP client that ignores proxy settings of the environment."""
    with httpx.Client(trust_env=False, timeout=15.0) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    """The Authorization header for ``key``."""
    return {"Authorization": f"Bearer {key}"}


def search(http: httpx.Client, sandbox: Sandbox, key: str | None = None) -> httpx.Response:
    """experiments/search through the proxy, with the admin key unless told otherwise."""
    key = sandbox.keys.admin if key is None else key
    return http.get(sandbox.registry_url + SEARCH, headers=bearer(key))


def upload(http: httpx.Client, sandbox: Sandbox, name: str, data: bytes) -> httpx.Response:
    """An artifact PUT through the proxy with the admin key."""
    return http.put(
        sandbox.registry_url + ARTIFACT.format(name=name), headers=bearer(sandbox.keys.admin), content=data
    )


def validate(http: httpx.Client, sandbox: Sandbox, key: str, service_id: str = "platform") -> httpx.Response:
    """Key validation at the auth service, as the monitor does it."""
    return http.post(sandbox.auth_url + VALIDATE, headers=bearer(key), json={"service_id": service_id})


def assert_alb_503(answer: httpx.Response) -> None:
    """The ALB's own HTML 503, not an app's JSON."""
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("text/html")
    assert "503 Service Temporarily Unavailable" in answer.text


# -- start-up, keys, routes ------------------------------------------------------------------------


def test_keys_are_fresh_test_keys_and_masked_in_repr(sandbox: Sandbox) -> None:
    """The three keys are distinct hk_test_ + 32 chars, and the keys' repr never shows them."""
    keys = [sandbox.keys.admin, sandbox.keys.non_admin, sandbox.keys.revoked]
    assert len(set(keys)) == 3
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        assert len(key) == len(KEY_PREFIX) + 32
        assert key not in repr(sandbox.keys)
    assert sandbox.keys["admin"] == sandbox.keys.admin


def test_env_points_at_the_sandbox_with_the_admin_key(sandbox: Sandbox) -> None:
    """env() hands the monitor the sandbox's URLs and the admin key, never the default ports in tests."""
    env = sandbox.env()
    assert env["AUTH_URL"] == sandbox.auth_url
    assert env["REGISTRY_URL"] == sandbox.registry_url
    assert env["SYNTHMON_API_KEY"] == sandbox.keys.admin
    assert env["SANDBOX_NON_ADMIN_API_KEY"] == sandbox.keys.non_admin
    assert not sandbox.auth_url.endswith(":8101")
    assert not sandbox.registry_url.endswith(":8102")


def test_admin_key_validates_with_the_production_body(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """The admin key validates for service 'platform' with the contract's 200 fields."""
    answer = validate(http, sandbox, sandbox.keys.admin)
    assert answer.status_code == 200
    body = answer.json()
    assert body["is_valid"] is True
    assert body["service_id"] == "platform"
    assert {"key_id", "user_id", "scopes", "rate_limit_per_hour", "billing_plan"} <= body.keys()
    assert body["is_admin"] is True


@pytest.mark.parametrize(
    ("how", "expected"),
    [("x-api-key", 200), ("body", 200), ("none", 400)],
    ids=["x-api-key-header", "body-field", "no-key-400"],
)
def test_auth_accepts_the_key_in_every_documented_place(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl, how: str, expected: int
) -> None:
    """The key is taken from X-API-Key or the body's api_key; none at all is a 400."""
    body: dict[str, str] = {"service_id": "platform"}
    headers: dict[str, str] = {}
    if how == "x-api-key":
        headers["X-API-Key"] = sandbox.keys.admin
    elif how == "body":
        body["api_key"] = sandbox.keys.admin
    answer = http.post(sandbox.auth_url + VALIDATE, headers=headers, json=body)
    assert answer.status_code == expected
    if expected == 400:
        assert answer.json() == {"detail": "No API key provided"}


def test_revoked_and_unknown_keys_get_401(http: httpx.Client, sandbox: Sandbox, faults: FaultControl) -> None:
    """Revoked and unknown keys are 401 at the auth service and at the registry."""
    for key in (sandbox.keys.revoked, KEY_PREFIX + "y" * 32):
        assert validate(http, sandbox, key).json() == {"detail": "API key not found or invalid"}
        answer = search(http, sandbox, key)
        assert answer.status_code == 401
        assert answer.json() == {"detail": "Invalid or expired API key"}


def test_wrong_service_id_gets_401(http: httpx.Client, sandbox: Sandbox, faults: FaultControl) -> None:
    """A valid key asked for service 'ml-platform' (the seed's mix-up) is 401 not-authorized."""
    answer = validate(http, sandbox, sandbox.keys.admin, service_id="ml-platform")
    assert answer.status_code == 401
    assert answer.json() == {"is_valid": False, "error": "Key not authorized for this service"}


def test_registry_needs_a_key(http: httpx.Client, sandbox: Sandbox, faults: FaultControl) -> None:
    """No key on a registry path is 401 'API key required'."""
    answer = http.get(sandbox.registry_url + SEARCH)
    assert answer.status_code == 401
    assert answer.json() == {"detail": "API key required"}


def test_non_admin_key_is_refused_on_registry_paths(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """The non-admin key validates at auth but gets 403 REGISTRY_ADMIN_REQUIRED from the registry."""
    assert validate(http, sandbox, sandbox.keys.non_admin).status_code == 200
    for path in (SEARCH, "/api/health"):
        answer = http.get(sandbox.registry_url + path, headers=bearer(sandbox.keys.non_admin))
        assert answer.status_code == 403
        assert answer.json()["error"] == "REGISTRY_ADMIN_REQUIRED"


def test_healthy_platform_answers_the_incident_checklist(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """The seed's ten ALB checks pass on a healthy sandbox (isolation routes 404)."""
    admin = bearer(sandbox.keys.admin)
    assert http.get(sandbox.auth_url + "/health").status_code == 200
    assert http.get(sandbox.auth_url + "/").json()["service"] == "Hokusai Authentication Service"
    assert validate(http, sandbox, sandbox.keys.admin).status_code == 200
    assert http.get(sandbox.registry_url + "/health").status_code == 200
    assert http.get(sandbox.registry_url + "/api/health", headers=admin).status_code == 200
    ui = http.get(sandbox.registry_url + "/mlflow/")
    assert ui.status_code == 200
    assert "<title>MLflow</title>" in ui.text
    answer = search(http, sandbox)
    assert answer.status_code == 200
    assert any(e["artifact_location"].startswith("mlflow-artifacts:/") for e in answer.json()["experiments"])
    assert http.post(sandbox.registry_url + VALIDATE, headers=admin, json={}).status_code == 404
    assert http.get(sandbox.auth_url + "/mlflow/").status_code == 404
    assert http.get(sandbox.registry_url + "/health/mlflow").status_code == 200
    assert http.get(sandbox.registry_url + "/api/health/mlflow").json()["status"] == "ok"


def test_search_without_max_results_is_mlflows_400(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """The proxy passes MLflow's own 400 through: experiments/search needs max_results."""
    answer = http.get(
        sandbox.registry_url + "/api/mlflow/api/2.0/mlflow/experiments/search",
        headers=bearer(sandbox.keys.admin),
    )
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_mlflow_serves_everything_under_its_static_prefix(http: httpx.Client, sandbox: Sandbox) -> None:
    """MLflow 3.x (direct): /mlflow/health and prefixed REST answer; unprefixed REST listing is 404."""
    assert http.get(sandbox.mlflow_url + "/mlflow/health").status_code == 200
    prefixed = http.get(sandbox.mlflow_url + "/mlflow/api/2.0/mlflow/experiments/search?max_results=1")
    assert prefixed.status_code == 200
    assert (
        http.get(sandbox.mlflow_url + "/api/2.0/mlflow/experiments/search?max_results=1").status_code == 404
    )
    assert http.get(sandbox.mlflow_url + "/api/2.0/mlflow-artifacts/artifacts?path=0").status_code == 404


def test_artifact_round_trip_streams_without_holding_the_body(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """A 32 MiB artifact round-trips through the proxy intact; the proxy's peak RSS grows far less."""
    size = 32 * 1024 * 1024
    chunk = os.urandom(1024 * 1024)
    digest = hashlib.sha256(chunk * 32).hexdigest()

    def body() -> Iterator[bytes]:
        for _ in range(32):
            yield chunk

    platform_status = Path(f"/proc/{sandbox.pids['platform']}/status")

    def peak_rss_kib() -> int:
        line = next(x for x in platform_status.read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1])

    before = peak_rss_kib()
    url = sandbox.registry_url + ARTIFACT.format(name="big.bin")
    headers = {**bearer(sandbox.keys.admin), "Content-Length": str(size)}
    assert http.put(url, headers=headers, content=body()).status_code == 200
    received = hashlib.sha256()
    with http.stream("GET", url, headers=bearer(sandbox.keys.admin)) as answer:
        assert answer.status_code == 200
        for part in answer.iter_bytes():
            received.update(part)
    assert received.hexdigest() == digest
    growth_kib = peak_rss_kib() - before
    assert growth_kib < 12 * 1024, f"the proxy's peak RSS grew by {growth_kib} KiB: it held the body"


# -- fault control ---------------------------------------------------------------------------------


def test_fault_control_rejects_unknown_names_and_changes_nothing(
    sandbox: Sandbox, faults: FaultControl
) -> None:
    """An unknown fault raises before any change; the active set stays as it was."""
    faults.set_faults("mlflow-slow")
    with pytest.raises(UnknownFaultError):
        faults.set_faults("mlflow-slow", "no-such-fault")
    assert faults.active_faults() == ("mlflow-slow",)


def test_admin_endpoint_requires_the_per_start_token(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """A wrong admin token is refused with 401 and changes nothing."""
    admin_url = sandbox.faults._url  # the URL is not a secret; the token is
    wrong = FaultControl(admin_url, "not-the-token")
    with pytest.raises(FaultControlError, match="401"):
        wrong.set_faults("auth-down")
    answer = http.put(admin_url + "/faults", json={"faults": ["auth-down"]})
    assert answer.status_code == 401
    assert faults.active_faults() == ()


def test_faults_combine_and_clear_restores_health(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """Faults add up at runtime; clear brings the healthy answers back without restart."""
    faults.add_fault("registry-health-503")
    faults.add_fault("mlflow-down")
    assert set(sandbox.active_faults()) == {"registry-health-503", "mlflow-down"}
    assert http.get(sandbox.registry_url + "/health").status_code == 503
    assert search(http, sandbox).status_code == 502
    faults.clear_faults()
    assert http.get(sandbox.registry_url + "/health").status_code == 200
    assert search(http, sandbox).status_code == 200


# -- every fault, with plain httpx ------------------------------------------------------------------


def test_seed_incident_artifacts_404_with_registry_health_503(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """The seed: key validates, experiments search passes through the proxy, artifact upload is 404."""
    faults.set_faults("artifacts-404", "registry-health-503")
    assert validate(http, sandbox, sandbox.keys.admin).status_code == 200
    assert search(http, sandbox).status_code == 200
    assert http.get(sandbox.registry_url + "/health").status_code == 503
    assert upload(http, sandbox, "seed.txt", b"model bytes").status_code == 404


def test_artifacts_disabled_is_mlflows_503(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """artifacts-disabled: artifact routes answer 503 'Artifact serving is disabled'; the API works."""
    faults.set_faults("artifacts-disabled")
    answer = upload(http, sandbox, "disabled.txt", b"x")
    assert answer.status_code == 503
    assert "Artifact serving is disabled" in answer.json()["detail"]
    assert search(http, sandbox).status_code == 200


def test_registry_health_503_leaves_the_proxy_working(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """registry-health-503: /health and /ready are 503 JSON, the MLflow proxy still answers."""
    faults.set_faults("registry-health-503")
    for path in ("/health", "/ready"):
        answer = http.get(sandbox.registry_url + path)
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/json"
    assert search(http, sandbox).status_code == 200


def test_alb_no_healthy_target_is_html_503_everywhere_on_the_registry(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """alb-no-healthy-target: every registry path is the ALB's HTML 503; auth is unaffected."""
    faults.set_faults("alb-no-healthy-target")
    for path in ("/health", SEARCH, "/mlflow/"):
        assert_alb_503(http.get(sandbox.registry_url + path, headers=bearer(sandbox.keys.admin)))
    assert http.get(sandbox.auth_url + "/health").status_code == 200


def test_auth_down_is_alb_503_and_registry_503_retry_after(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """auth-down: the auth ALB answers HTML 503; the registry answers 503 + Retry-After: 1."""
    faults.set_faults("auth-down")
    assert_alb_503(http.get(sandbox.auth_url + "/health"))
    assert_alb_503(validate(http, sandbox, sandbox.keys.admin))
    answer = search(http, sandbox)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.json() == {"detail": "Authentication service unavailable"}


def test_auth_slow_delays_validation_but_answers(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """auth-slow: validation takes at least auth_slow_s and still succeeds (also through the registry)."""
    faults.set_faults("auth-slow")
    delay = sandbox.delays.auth_slow_s
    started = time.monotonic()
    assert validate(http, sandbox, sandbox.keys.admin).status_code == 200
    assert time.monotonic() - started >= delay
    started = time.monotonic()
    assert search(http, sandbox).status_code == 200
    assert time.monotonic() - started >= delay


def test_auth_wrong_service_rejects_platform(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """auth-wrong-service: service 'platform' gets 401 not-authorized for every key; the registry 401s."""
    faults.set_faults("auth-wrong-service")
    answer = validate(http, sandbox, sandbox.keys.admin)
    assert answer.status_code == 401
    assert answer.json()["error"] == "Key not authorized for this service"
    assert validate(http, sandbox, sandbox.keys.admin, service_id="ml-platform").status_code == 200
    assert search(http, sandbox).status_code == 401


def test_strip_authorization_makes_mlflow_demand_a_key(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """strip-authorization: the key passes the proxy, then MLflow's gateway answers 401 'API key required'."""
    faults.set_faults("strip-authorization")
    answer = search(http, sandbox)
    assert answer.status_code == 401
    assert answer.json() == {"error_code": "UNAUTHENTICATED", "message": "API key required"}


def test_admin_required_refuses_even_the_admin_key(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """admin-required: the admin key validates at auth, the registry answers 403 REGISTRY_ADMIN_REQUIRED."""
    faults.set_faults("admin-required")
    assert validate(http, sandbox, sandbox.keys.admin).status_code == 200
    answer = search(http, sandbox)
    assert answer.status_code == 403
    assert answer.json()["error"] == "REGISTRY_ADMIN_REQUIRED"


def test_mlflow_slow_delays_proxied_calls_only(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """mlflow-slow: proxied calls take at least mlflow_slow_s and succeed; MLflow itself stays fast."""
    faults.set_faults("mlflow-slow")
    started = time.monotonic()
    assert search(http, sandbox).status_code == 200
    assert time.monotonic() - started >= sandbox.delays.mlflow_slow_s
    started = time.monotonic()
    assert http.get(sandbox.mlflow_url + "/mlflow/health").status_code == 200
    assert time.monotonic() - started < sandbox.delays.mlflow_slow_s


def test_artifacts_slow_delays_artifact_calls_by_the_delay_set_at_runtime(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """artifacts-slow: artifact calls take the runtime delay longer and succeed; other proxied calls
    stay fast; clearing the faults forgets the delay, and a bad delay is refused."""
    assert faults.set_delays(artifacts_slow_s=0.6) == {"artifacts_slow_s": 0.6}
    faults.set_faults("artifacts-slow")
    started = time.monotonic()
    assert upload(http, sandbox, "slow.txt", b"slow").status_code == 200
    assert time.monotonic() - started >= 0.6
    started = time.monotonic()
    assert search(http, sandbox).status_code == 200
    assert time.monotonic() - started < 0.6
    with pytest.raises(ValueError, match="unknown delay"):
        faults.set_delays(s3_slow_s=1.0)
    faults.clear_faults()
    assert faults.delays() == {}


def test_mlflow_down_is_502_and_alb_503(http: httpx.Client, sandbox: Sandbox, faults: FaultControl) -> None:
    """mlflow-down: proxy 502, /mlflow/ ALB HTML 503, both MLflow health routes 503."""
    faults.set_faults("mlflow-down")
    answer = search(http, sandbox)
    assert answer.status_code == 502
    assert answer.json()["error"] == "MLFLOW_UNAVAILABLE"
    assert_alb_503(http.get(sandbox.registry_url + "/mlflow/"))
    assert http.get(sandbox.registry_url + "/health/mlflow").status_code == 503
    assert http.get(sandbox.registry_url + "/api/health/mlflow").status_code == 503
    assert http.get(sandbox.registry_url + "/health?detailed=true").status_code == 503
    assert http.get(sandbox.registry_url + "/health").status_code == 200


def test_mlflow_timeout_is_504_after_the_upstream_timeout(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """mlflow-timeout: the proxy answers 504 once its upstream timeout has passed, not before."""
    faults.set_faults("mlflow-timeout")
    timeout = sandbox.delays.upstream_timeout_s
    started = time.monotonic()
    answer = search(http, sandbox)
    elapsed = time.monotonic() - started
    assert answer.status_code == 504
    assert answer.json()["error"] == "MLFLOW_TIMEOUT"
    assert timeout <= elapsed < timeout + 5


def test_artifact_store_500_on_artifact_routes(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """artifact-store-500: artifact PUT and GET are 500 INTERNAL_ERROR; the tracking API works."""
    faults.set_faults("artifact-store-500")
    answer = upload(http, sandbox, "s3.txt", b"x")
    assert answer.status_code == 500
    assert answer.json()["error_code"] == "INTERNAL_ERROR"
    assert search(http, sandbox).status_code == 200


def test_rate_limited_is_429_with_retry_after(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """rate-limited: auth and registry answer 429 with Retry-After: 60 and X-RateLimit-* headers."""
    faults.set_faults("rate-limited")
    for answer in (validate(http, sandbox, sandbox.keys.admin), search(http, sandbox)):
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "60"
        assert answer.headers["x-ratelimit-remaining"] == "0"
        assert "x-ratelimit-limit" in answer.headers


def test_corrupt_artifact_returns_other_bytes_of_the_same_length(
    http: httpx.Client, sandbox: Sandbox, faults: FaultControl
) -> None:
    """corrupt-artifact: the upload succeeds, the download has the same length and different bytes."""
    data = b"synthmon round trip " * 100
    assert upload(http, sandbox, "corrupt.txt", data).status_code == 200
    url = sandbox.registry_url + ARTIFACT.format(name="corrupt.txt")
    assert http.get(url, headers=bearer(sandbox.keys.admin)).content == data
    faults.set_faults("corrupt-artifact")
    corrupted = http.get(url, headers=bearer(sandbox.keys.admin)).content
    assert len(corrupted) == len(data)
    assert corrupted != data
    assert (
        http.get(
            sandbox.mlflow_url + "/mlflow/api/2.0/mlflow-artifacts/artifacts/0/sandbox-tests/corrupt.txt"
        ).content
        == data
    )


def test_every_fault_has_a_test_here() -> None:
    """Each documented fault name appears in a test of this module (no fault goes untested)."""
    source = Path(__file__).read_text()
    missing = [name for name in FAULTS if f'"{name}"' not in source.split("# -- every fault", 1)[1]]
    assert missing == []
