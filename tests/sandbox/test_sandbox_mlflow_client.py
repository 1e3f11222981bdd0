"""The sandbox through the real MLflow client, as users reach it: tracking URI ``<registry>/api/mlflow``
and ``MLFLOW_TRACKING_TOKEN=<key>``.

MLflow's client state is global (tracking URI, env-driven token and retries), so every test sets it
through the ``client_as`` fixture, which restores it afterwards. Retries are off: a fault must show
as the first answer, not after minutes of back-off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from sandbox import FaultControl, Sandbox

mlflow = pytest.importorskip("mlflow")
sklearn_linear = pytest.importorskip("sklearn.linear_model")

pytestmark = pytest.mark.sandbox

ClientAs = Callable[[str], Any]


@pytest.fixture
def client_as(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClientAs]:
    """Point the global MLflow client at the sandbox's proxy with a given key; undone after the test."""
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

    def use(key: str) -> Any:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", key)
        mlflow.set_tracking_uri(sandbox.mlflow_tracking_uri)
        return mlflow.MlflowClient(tracking_uri=sandbox.mlflow_tracking_uri)

    try:
        yield use
    finally:
        mlflow.set_tracking_uri(previous)


def small_model() -> tuple[Any, np.ndarray]:
    """The incident's model: LogisticRegression on 100x5 random data, and some rows to predict."""
    rng = np.random.default_rng(7)
    features = rng.random((100, 5))
    labels = (features[:, 0] > 0.5).astype(int)
    return sklearn_linear.LogisticRegression().fit(features, labels), features[:5]


def log_small_model(experiment: str) -> tuple[str, str, Any, np.ndarray]:
    """Log the small model in a run of ``experiment``; returns (run id, model URI, model, rows)."""
    model, rows = small_model()
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_param("n_features", 5)
        mlflow.log_metric("accuracy", 0.9)
        # Explicit requirements: inferring them runs a subprocess per call (seconds each).
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    return run.info.run_id, info.model_uri, model, rows


def test_healthy_log_register_and_load_through_the_proxy(
    sandbox: Sandbox, faults: FaultControl, client_as: ClientAs
) -> None:
    """Healthy: log_model uploads through /api/mlflow, register_model works, the model loads and predicts."""
    client = client_as(sandbox.keys.admin)
    assert client.search_experiments(max_results=1)
    run_id, _, model, rows = log_small_model("sandbox-client-healthy")
    version = mlflow.register_model(f"runs:/{run_id}/model", "sandbox-client-model")
    loaded = mlflow.pyfunc.load_model(f"models:/sandbox-client-model/{version.version}")
    assert list(loaded.predict(rows)) == list(model.predict(rows))
    artifact_root = client.get_run(run_id).info.artifact_uri
    assert artifact_root.startswith("mlflow-artifacts:/")


@pytest.mark.parametrize(
    ("fault", "status"),
    [("artifacts-404", "404"), ("artifacts-disabled", "503"), ("artifact-store-500", "500")],
    ids=["artifacts-404", "artifacts-disabled", "artifact-store-500"],
)
def test_log_model_fails_on_the_artifact_upload(
    sandbox: Sandbox, faults: FaultControl, client_as: ClientAs, fault: str, status: str
) -> None:
    """Artifact faults: the tracking API works, log_model fails on the artifact PUT with the fault's code."""
    client = client_as(sandbox.keys.admin)
    faults.set_faults(fault)
    assert client.search_experiments(max_results=1)
    with pytest.raises(Exception, match=status) as caught:
        log_small_model(f"sandbox-client-{fault}")
    assert "mlflow-artifacts/artifacts" in str(caught.value)


def test_seed_incident_through_the_mlflow_client(
    sandbox: Sandbox, faults: FaultControl, client_as: ClientAs
) -> None:
    """The seed with the client: search_experiments passes, log_model fails with 404 on mlflow-artifacts."""
    client = client_as(sandbox.keys.admin)
    faults.set_faults("artifacts-404", "registry-health-503")
    assert [e.name for e in client.search_experiments(max_results=100)]
    with pytest.raises(Exception, match="404") as caught:
        log_small_model("sandbox-client-seed")
    assert "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/" in str(caught.value)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("alb-no-healthy-target", "503"),
        ("auth-down", "503"),
        ("auth-wrong-service", "Invalid or expired API key"),
        ("strip-authorization", "API key required"),
        ("admin-required", "REGISTRY_ADMIN_REQUIRED"),
        ("mlflow-down", "502"),
        ("mlflow-timeout", "504"),
        ("rate-limited", "429"),
    ],
    ids=lambda value: str(value),
)
def test_api_faults_fail_the_client_with_their_status(
    sandbox: Sandbox, faults: FaultControl, client_as: ClientAs, fault: str, expected: str
) -> None:
    """Each API-level fault makes search_experiments fail with the fault's status or error message."""
    client = client_as(sandbox.keys.admin)
    faults.set_faults(fault)
    with pytest.raises(Exception, match=expected):
        client.search_experiments(max_results=1)


@pytest.mark.parametrize(
    "fault", ["registry-health-503", "auth-slow", "mlflow-slow"], ids=lambda value: str(value)
)
def test_faults_that_do_not_break_the_client(
    sandbox: Sandbox, faults: FaultControl, client_as: ClientAs, fault: str
) -> None:
    """Health-only and latency faults leave the client working."""
    client = client_as(sandbox.keys.admin)
    faults.set_faults(fault)
    assert client.search_experiments(max_results=1)


def test_corrupt_artifact_changes_what_the_client_downloads(
    sandbox: Sandbox, faults: FaultControl, client_as: ClientAs, tmp_path: Any
) -> None:
    """corrupt-artifact: the MLmodel file the client downloads differs from the one it uploaded."""
    client_as(sandbox.keys.admin)
    run_id, _, _, _ = log_small_model("sandbox-client-corrupt")
    healthy = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="model/MLmodel", dst_path=str(tmp_path / "a")
    )
    faults.set_faults("corrupt-artifact")
    corrupted = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="model/MLmodel", dst_path=str(tmp_path / "b")
    )
    original = open(healthy, "rb").read()  # noqa: SIM115 -- two tiny reads
    altered = open(corrupted, "rb").read()  # noqa: SIM115
    assert len(altered) == len(original)
    assert altered != original


@pytest.mark.parametrize(
    ("which", "expected"),
    [("non_admin", "REGISTRY_ADMIN_REQUIRED"), ("revoked", "Invalid or expired API key")],
    ids=["non-admin", "revoked"],
)
def test_non_admin_and_revoked_keys_fail_the_client(
    sandbox: Sandbox, faults: FaultControl, client_as: ClientAs, which: str, expected: str
) -> None:
    """Through the client, the non-admin key gets REGISTRY_ADMIN_REQUIRED, the revoked key is invalid."""
    client = client_as(sandbox.keys[which])
    with pytest.raises(Exception, match=expected):
        client.search_experiments(max_results=1)
