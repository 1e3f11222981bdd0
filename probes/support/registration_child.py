"""Subprocess side of the registration probe: register a model the way users do, then clean up.

Runs only where mlflow may be imported: inside the runner's isolated child (the probe is
``isolated = True``), or via ``run_isolated("probes.support.registration_child:main", payload)``.
The payload (JSON on stdin, never argv) holds the API key; it becomes this process's
``MLFLOW_TRACKING_TOKEN`` and is masked in every message returned.

Every object created carries the synthetic tag (default ``synthmon.synthetic=true``) and the
synthmon run id. Cleanup deletes this run's objects, then sweeps older leftovers (a run killed
mid-way) that carry the tag and are older than the TTL. Nothing without the tag is ever deleted:
:func:`select_expired` is the single place that decides, and it checks the tag on each object.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from probes.support.masking import SecretMasker
from probes.support.mlflow_child import (
    LocalFailure,
    configure_client_env,
    prepare_environment,
    set_request_timeout,
    timed_step,
)

#: Steps that parse what the platform sent back (the model files, the loaded model's output):
#: an unknown exception there means corrupted artifacts (FAIL), not a monitor bug (ERROR).
READS_PLATFORM_DATA = frozenset({"load", "predict"})

#: The step that talks to nothing but this host: any failure of it is the monitor's (ERROR).
LOCAL_STEPS = frozenset({"train"})
#: At most this share of the run's budget is kept back for ``cleanup``.
CLEANUP_SHARE = 0.25

STEP_NAMES = (
    "set_experiment",
    "train",
    "log_model",
    "register",
    "wait_ready",
    "load",
    "predict",
    "cleanup",
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An MLflow object the sweep may delete: its kind, id, creation time (ms) and tags."""

    kind: str
    ident: str
    created_ms: int
    tags: Mapping[str, str]


def select_expired(
    candidates: Iterable[Candidate],
    *,
    tag: str,
    now_ms: int,
    ttl_s: float,
    keep: Iterable[str] = (),
) -> list[Candidate]:
    """The candidates to delete: tagged ``tag=true``, older than ``ttl_s`` at ``now_ms``, not kept.

    Pure. The tag is checked here on every object, whatever filter the server applied, so a
    server that ignores a filter can never make the sweep delete a user's object.
    """
    kept = set(keep)
    cutoff = now_ms - int(ttl_s * 1000)
    return [
        c for c in candidates if c.tags.get(tag) == "true" and c.created_ms <= cutoff and c.ident not in kept
    ]


def training_data(seed: int) -> tuple[Any, Any, Any]:
    """Deterministic data: 100x5 features, labels from a fixed linear rule, and 10 probe rows."""
    import numpy as np

    rng = np.random.RandomState(seed)
    x = rng.normal(size=(100, 5))
    weights = np.array([1.5, -2.0, 0.5, 1.0, -0.5])
    y = (x @ weights > 0).astype(int)
    probe_rows = rng.normal(size=(10, 5))
    return x, y, probe_rows


def main(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Entry point for ``run_isolated``: mask this process's output, then :func:`run_registration`."""
    prepare_environment(payload)
    return run_registration(payload)


def run_registration(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The eight steps; returns StepResult-shaped dicts. See :mod:`probes.registration` for payload keys.

    With ``budget_s`` in the payload the whole function returns within about that many seconds:
    the steps share the budget minus a reserve for ``cleanup`` (``cleanup_timeout_s``, at most a
    quarter of it); a step still running when its share is spent is abandoned and reported as a
    FAIL ``timeout``, with the steps before it. A slow platform thus reads "log_model timed out"
    instead of the parent's hard kill, which leaves nothing but an ERROR.
    """
    started = time.monotonic()  # the budget includes importing mlflow
    budget_s = float(payload.get("budget_s") or 0.0)
    deadline = started + budget_s if budget_s > 0 else None
    cleanup_reserve = min(float(payload.get("cleanup_timeout_s", 20.0)), CLEANUP_SHARE * budget_s)
    request_timeout_s = float(payload.get("request_timeout_s", 30))
    key = str(payload.get("api_key") or "")
    secrets = [key] if key else []
    # Before importing mlflow (telemetry starts at import), and also when the runner's own
    # isolated child (probes.support.child) runs the probe, which does not go through main().
    configure_client_env(payload)
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(str(payload["tracking_uri"]))
    client = MlflowClient()

    tag = str(payload.get("synthetic_tag", "synthmon.synthetic"))
    run_tag = str(payload.get("run_tag", "synthmon.run_id"))
    synthmon_run = str(payload.get("run_id", "manual"))
    experiment_name = str(payload.get("experiment_name", "synthmon-synthetic"))
    model_name = str(payload.get("model_name", "synthmon-synthetic"))
    seed = int(payload.get("seed", 42))
    platform_tags = {str(k): str(v) for k, v in dict(payload.get("platform_tags") or {}).items()}
    ttl_s = float(payload.get("ttl_s", 3600))
    now_ms = int(payload.get("now_ms") or time.time() * 1000)
    wait_ready_s = float(payload.get("wait_ready_timeout_s", 60))
    ours = {tag: "true", run_tag: synthmon_run}

    steps: list[dict[str, Any]] = []
    state: dict[str, Any] = {}

    def step(name: str, fn: Callable[[], Any]) -> bool:
        timeout_s: float | None = None
        if deadline is not None:
            until = deadline if name == "cleanup" else deadline - cleanup_reserve
            timeout_s = until - time.monotonic()
            if timeout_s <= 0:
                steps.append(
                    {
                        "name": name,
                        "status": "FAIL",
                        "error_class": "timeout",
                        "message": f"{name} not started: the run's {budget_s:.0f}s budget is spent (timeout)",
                    }
                )
                return False
            # Each client request ends within the step's share, not the option's full timeout.
            set_request_timeout(min(request_timeout_s, timeout_s))
        result, value = timed_step(
            name,
            fn,
            secrets,
            reads_platform_data=name in READS_PLATFORM_DATA,
            local=name in LOCAL_STEPS,
            timeout_s=timeout_s,
        )
        _refine_failure(name, result, state)
        if result["status"] == "PASS" and isinstance(value, dict):
            result.update(value)  # a step may add its own message / status / measurements
        steps.append(result)
        return bool(result["status"] == "PASS")

    def set_experiment() -> dict[str, Any]:
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            experiment_id = client.create_experiment(experiment_name, tags={tag: "true"})
        else:
            experiment_id = experiment.experiment_id
            if experiment.lifecycle_stage == "deleted":
                if experiment.tags.get(tag) != "true":
                    # The platform's state, not the monitor's failure: users cannot log there either.
                    return {
                        "status": "FAIL",
                        "error_class": "experiment_deleted",
                        "message": f"experiment {experiment_name!r} is deleted and not synthmon's",
                    }
                client.restore_experiment(experiment_id)
        state["experiment_id"] = experiment_id
        return {"message": f"experiment {experiment_name!r} ({experiment_id})"}

    def train() -> dict[str, Any]:
        from sklearn.linear_model import LogisticRegression

        x, y, probe_rows = training_data(seed)
        model = LogisticRegression(random_state=seed).fit(x, y)
        state.update(model=model, probe_rows=probe_rows, expected=model.predict(probe_rows).tolist())
        state["accuracy"] = float(model.score(x, y))
        return {"message": f"LogisticRegression accuracy {state['accuracy']:.3f}"}

    def log_model() -> dict[str, Any]:
        import sklearn

        state["log_model_phase"] = "run"
        run = client.create_run(state["experiment_id"], tags=ours, run_name=f"synthmon-{synthmon_run}")
        state["mlflow_run_id"] = run.info.run_id
        client.log_param(run.info.run_id, "seed", seed)
        client.log_metric(run.info.run_id, "accuracy", state["accuracy"])
        # Explicit requirements: inferring them starts another Python that loads the model (slow).
        kwargs: dict[str, Any] = {"pip_requirements": [f"scikit-learn=={sklearn.__version__}"]}
        # From here on the MLflow API has answered (run, param, metric): what fails is the upload.
        state["log_model_phase"] = "upload"
        with mlflow.start_run(run_id=run.info.run_id):
            try:
                info = mlflow.sklearn.log_model(state["model"], name="model", tags=ours, **kwargs)
            except TypeError:  # mlflow 2.x: no `name`/`tags`, artifact_path instead
                info = mlflow.sklearn.log_model(state["model"], artifact_path="model", **kwargs)
        state["logged_model_id"] = getattr(info, "model_id", None)
        return {"message": f"logged model to run {run.info.run_id}"}

    def register() -> dict[str, Any]:
        from mlflow.exceptions import MlflowException

        try:
            client.get_registered_model(model_name)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                raise
            client.create_registered_model(model_name, tags={tag: "true"})
        tags = {**platform_tags, **ours}
        if "benchmark_metric" in tags and "benchmark_value" not in tags:
            tags["benchmark_value"] = f"{state['accuracy']:.6f}"
        # await_registration_for=0: waiting is our own bounded wait_ready step.
        version = mlflow.register_model(
            f"runs:/{state['mlflow_run_id']}/model", model_name, await_registration_for=0, tags=tags
        )
        state["version"] = str(version.version)
        return {"message": f"registered {model_name} version {version.version}"}

    def wait_ready() -> dict[str, Any]:
        deadline = time.monotonic() + wait_ready_s
        status = ""
        while True:
            status = str(client.get_model_version(model_name, state["version"]).status)
            if status == "READY":
                return {"message": f"version {state['version']} READY"}
            if status == "FAILED_REGISTRATION" or time.monotonic() >= deadline:
                return {
                    "status": "FAIL",
                    "error_class": "not_ready",
                    "message": f"version {state['version']} is {status} after {wait_ready_s:.0f}s",
                }
            time.sleep(0.25)  # polling MLflow in the child; the daemon never sleeps on this

    def load() -> dict[str, Any]:
        import mlflow.pyfunc

        try:
            state["tmp"] = tempfile.mkdtemp(prefix="synthmon-load-")
        except OSError as exc:  # whatever its errno: the temp dir is this host's
            raise LocalFailure(f"cannot create a temporary directory: {exc}") from exc
        state["loaded"] = mlflow.pyfunc.load_model(
            f"models:/{model_name}/{state['version']}", dst_path=state["tmp"]
        )
        return {"message": f"loaded models:/{model_name}/{state['version']}"}

    def predict() -> dict[str, Any]:
        got = [int(v) for v in list(state["loaded"].predict(state["probe_rows"]))]
        if got != [int(v) for v in state["expected"]]:
            return {
                "status": "FAIL",
                "error_class": "prediction_mismatch",
                "message": f"loaded model predicts {got}, logged one {state['expected']}",
            }
        return {"message": f"{len(got)} predictions match"}

    def cleanup() -> dict[str, Any]:
        deleted = _delete_own(client, model_name, state)
        swept = _sweep(client, state.get("experiment_id"), model_name, tag, now_ms, ttl_s, state)
        return {
            "message": f"deleted {deleted} own object(s), swept {swept} leftover(s)",
            "measurements": {"cleanup_deleted": float(deleted), "swept_leftovers": float(swept)},
        }

    actions: dict[str, Callable[[], Any]] = {
        "set_experiment": set_experiment,
        "train": train,
        "log_model": log_model,
        "register": register,
        "wait_ready": wait_ready,
        "load": load,
        "predict": predict,
    }
    failed: str | None = None
    for name in STEP_NAMES[:-1]:
        if failed is not None:
            steps.append({"name": name, "status": "SKIPPED", "message": f"skipped: {failed} failed"})
            continue
        if not step(name, actions[name]):
            failed = name
    try:
        if "experiment_id" in state:
            step("cleanup", cleanup)
        else:
            steps.append(
                {"name": "cleanup", "status": "SKIPPED", "message": "skipped: set_experiment failed"}
            )
    finally:
        if "tmp" in state:
            shutil.rmtree(state["tmp"], ignore_errors=True)
    for s in steps:
        s["message"] = SecretMasker(secrets).mask(str(s.get("message", "")))
    return steps


#: Error classes of a platform that did not answer (or not in time): no answer to judge further.
_TRANSPORT_CLASSES = frozenset({"timeout", "connect_error", "connection_reset"})


def _refine_failure(name: str, result: dict[str, Any], state: Mapping[str, Any]) -> None:
    """Give a FAIL the error class that what the earlier steps proved makes it (``result`` in place).

    - ``log_model`` failing in its upload, after the run was created through MLflow's API:
      ``artifact_upload_failed`` (the artifact route, not MLflow, is what fails);
    - ``load`` answered 404 for a model whose files ``log_model`` uploaded through the same route:
      ``artifact_missing`` (the store lost them; the route works);
    - ``load`` failing without any HTTP status: the files downloaded but do not parse (YAML,
      pickle, UTF-8): ``artifact_unreadable``.

    Transport failures keep their class: without an answer there is nothing more to tell.
    """
    if result["status"] != "FAIL" or result.get("error_class") in _TRANSPORT_CLASSES:
        return
    if name == "log_model" and state.get("log_model_phase") == "upload":
        result["error_class"] = "artifact_upload_failed"
    elif name == "load" and result.get("http_status") == 404:
        result["error_class"] = "artifact_missing"
    elif name == "load" and result.get("http_status") is None:
        result["error_class"] = "artifact_unreadable"


def _delete_own(client: Any, model_name: str, state: dict[str, Any]) -> int:
    """Delete this run's model version, logged model and run (whichever exist). Returns the count."""
    count = 0
    if "version" in state:
        client.delete_model_version(model_name, state["version"])
        count += 1
    if state.get("logged_model_id"):
        client.delete_logged_model(state["logged_model_id"])
        count += 1
    if "mlflow_run_id" in state:
        client.delete_run(state["mlflow_run_id"])
        count += 1
    return count


def _sweep(
    client: Any,
    experiment_id: str | None,
    model_name: str,
    tag: str,
    now_ms: int,
    ttl_s: float,
    state: dict[str, Any],
) -> int:
    """Delete synthetic leftovers older than the TTL: model versions, runs, logged models."""
    from mlflow.exceptions import MlflowException

    keep = [str(state.get(k)) for k in ("version", "mlflow_run_id", "logged_model_id") if state.get(k)]
    count = 0
    try:
        versions = client.search_model_versions(f"name='{model_name}'")
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        versions = []
    candidates = [
        Candidate("version", str(v.version), int(v.creation_timestamp or 0), dict(v.tags or {}))
        for v in versions
        if v.name == model_name
    ]
    for c in select_expired(candidates, tag=tag, now_ms=now_ms, ttl_s=ttl_s, keep=keep):
        client.delete_model_version(model_name, c.ident)
        count += 1
    if experiment_id is None:
        return count
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = 'true'", max_results=500)
    run_candidates = [
        Candidate("run", r.info.run_id, int(r.info.start_time or 0), dict(r.data.tags or {})) for r in runs
    ]
    for c in select_expired(run_candidates, tag=tag, now_ms=now_ms, ttl_s=ttl_s, keep=keep):
        client.delete_run(c.ident)
        count += 1
    search_logged = getattr(client, "search_logged_models", None)
    if not callable(search_logged):  # mlflow 2.x clients have no logged models to sweep
        return count
    try:
        models = list(search_logged(experiment_ids=[experiment_id], max_results=100))
    except MlflowException as exc:
        # A 2.x server has no logged-model endpoint: nothing of that kind can be left over.
        if getattr(exc, "error_code", "") not in (
            "ENDPOINT_NOT_FOUND",
            "NOT_FOUND",
            "RESOURCE_DOES_NOT_EXIST",
        ):
            raise
        models = []
    model_candidates = [
        Candidate("logged_model", m.model_id, int(m.creation_timestamp or 0), dict(m.tags or {}))
        for m in models
    ]
    for c in select_expired(model_candidates, tag=tag, now_ms=now_ms, ttl_s=ttl_s, keep=keep):
        client.delete_logged_model(c.ident)
        count += 1
    return count
