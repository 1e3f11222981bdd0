"""The ``mlflow_api`` kind: list shapes, the synthetic experiment, skipping after a failure."""

from __future__ import annotations

import json

import httpx
import pytest
from probes_helpers import make_ctx, mock

from monitor.diagnosis import diagnose
from probes.base import Status, StepResult
from probes.mlflow_api import MlflowApiOptions, MlflowApiProbe, list_shape_problem


def _step(**kw: object) -> StepResult:
    base: dict[str, object] = {"name": "s", "status": Status.FAIL}
    base.update(kw)
    return StepResult(**base)  # type: ignore[arg-type]


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


@pytest.mark.parametrize("exists_after_race", [True, False], ids=["created_by_another", "broken_platform"])
async def test_an_experiment_created_by_another_writer_meanwhile_is_looked_up_again(
    exists_after_race: bool,
) -> None:
    """Lookup 404, then create 400 RESOURCE_ALREADY_EXISTS: another writer (the registration probe,
    another replica) created it in between, so it is looked up once more and found (PASS). A
    platform that keeps saying "does not exist" and "already exists" fails at the create."""
    lookups: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/get-by-name"):
            lookups.append(1)
            if len(lookups) > 1 and exists_after_race:
                return httpx.Response(
                    200, json={"experiment": {"experiment_id": "9", "lifecycle_stage": "active"}}
                )
            return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST"})
        if path.endswith("/experiments/create"):
            return httpx.Response(400, json={"error_code": "RESOURCE_ALREADY_EXISTS"})
        return httpx.Response(200, json={})

    ctx = make_ctx(mock(handler))
    async with ctx.http:
        steps = await MlflowApiProbe("m", MlflowApiOptions(client_search=False)).run(ctx)
    experiment = steps[2]
    assert len(lookups) == 2  # one more lookup, never a loop
    if exists_after_race:
        assert (experiment.status, experiment.message) == (
            Status.PASS,
            "experiment 'synthmon-synthetic' is 9",
        )
    else:
        assert (experiment.status, experiment.http_status) == (Status.FAIL, 400)


async def test_mlflow_api_skips_after_first_failure() -> None:
    """After experiments_search fails, the later steps are SKIPPED rather than failed again."""
    ctx = make_ctx(mock(lambda r: httpx.Response(403, json={"error": "REGISTRY_ADMIN_REQUIRED"})))
    async with ctx.http:
        steps = await MlflowApiProbe("m", MlflowApiOptions()).run(ctx)
    assert [s.status for s in steps] == [Status.FAIL, Status.SKIPPED, Status.SKIPPED, Status.SKIPPED]


async def test_registry_404_after_experiments_answered_is_the_model_registry() -> None:
    """experiments/search answers but registered-models/search is 404: the model registry is not
    served (the proxy route and the key just worked), not a missing route."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/registered-models/search"):
            return httpx.Response(404, json={"error_code": "ENDPOINT_NOT_FOUND"})
        return httpx.Response(200, json={"experiments": []})

    ctx = make_ctx(mock(handler))
    async with ctx.http:
        steps = await MlflowApiProbe("m", MlflowApiOptions(client_search=False)).run(ctx)
    failing = steps[1]
    assert (failing.name, failing.status, failing.http_status) == (
        "registered_models_search",
        Status.FAIL,
        404,
    )
    assert failing.error_class == "model_registry_not_served"
    assert diagnose(failing).cause == "model_registry_unavailable"  # type: ignore[union-attr]
    assert steps[2].status is Status.SKIPPED
