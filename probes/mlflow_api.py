"""The MLflow API probe: MLflow through the registry proxy, with the monitoring key as Bearer.

Steps, in order (all under ``<registry_url><mlflow_path>``, default ``/api/mlflow``):

- ``experiments_search``       GET ``/api/2.0/mlflow/experiments/search`` — always with
  ``max_results`` (without it MLflow answers 400, the seed's "parameter issue");
- ``registered_models_search`` GET ``/api/2.0/mlflow/registered-models/search``;
- ``experiment``               get the synthetic experiment by name, or create it tagged
  ``synthmon.synthetic=true`` (a soft-deleted synthetic experiment is restored; an untagged one of
  the same name is used as-is but never modified);
- ``client_search``            the MLflow client's own ``search_experiments(max_results=1)``, in a
  subprocess (the seed's check #10): what users' code actually does.

JSON shapes are validated: MLflow omits empty lists, so a missing list is fine, a wrong type is not.
After the first FAIL the remaining steps are SKIPPED: they go through the same proxy and key. A
404 from ``registered_models_search`` after ``experiments_search`` passed is
``model_registry_not_served``: the route and key work, MLflow serves no model registry.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import Field

from probes.base import HttpUrlStr, PositiveDuration, ProbeContext, ProbeOptions, Status, StepResult, skipped
from probes.support.httpstep import Exchange
from probes.support.mlflow_client import client_search_step
from probes.support.platform import bearer, join_url, platform_step


class MlflowApiOptions(ProbeOptions):
    """Options of the ``mlflow_api`` kind."""

    registry_url: HttpUrlStr = "http://127.0.0.1:8102"
    mlflow_path: str = "/api/mlflow"
    api_key_secret: str = "api_key"
    experiment_name: str = "synthmon-synthetic"
    synthetic_tag: str = "synthmon.synthetic"
    max_results: int = Field(default=1, ge=1, le=1000)
    request_timeout_s: PositiveDuration = 10.0
    step_latency_budget_s: PositiveDuration = 2.0
    client_search: bool = True
    #: The MLflow client check's own budget; it must fit in the probe's timeout with the others.
    client_timeout_s: PositiveDuration = 20.0

    def secret_names(self) -> set[str]:
        """The secrets this probe reads (the config checks they are defined)."""
        return {self.api_key_secret}

    def step_names(self) -> tuple[str, ...]:
        """The three REST steps, then the MLflow client's search when ``client_search``."""
        rest = ("experiments_search", "registered_models_search", "experiment")
        return (*rest, "client_search") if self.client_search else rest


def list_shape_problem(doc: Any, key: str, required: tuple[str, ...]) -> str | None:
    """None when ``doc`` is an object whose ``key`` (if present) lists objects with ``required`` keys."""
    if not isinstance(doc, dict):
        return "body is not a JSON object"
    items = doc.get(key, [])
    if not isinstance(items, list):
        return f"{key!r} is not a list"
    for item in items:
        if not isinstance(item, dict) or any(k not in item for k in required):
            return f"an entry of {key!r} lacks {', '.join(required)}"
    return None


class MlflowApiProbe:
    """Talks to MLflow's REST API through the proxy, then runs the client check; see the module."""

    Options: ClassVar[type[ProbeOptions]] = MlflowApiOptions
    isolated: ClassVar[bool] = False

    def __init__(self, name: str, options: MlflowApiOptions) -> None:
        self.name = name
        self.options = options

    @property
    def tracking_uri(self) -> str:
        """The tracking URI users give the MLflow client (the proxy mount)."""
        return join_url(self.options.registry_url, self.options.mlflow_path)

    async def _call(
        self,
        ctx: ProbeContext,
        step: str,
        method: str,
        api_path: str,
        key: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        expected: tuple[int, ...] = (200,),
        shape: tuple[str, tuple[str, ...]] | None = None,
    ) -> Exchange:
        o = self.options

        def check(_response: Any, body: bytes) -> str | None:
            if shape is None:
                return None
            try:
                doc = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                return "body is not JSON"
            return list_shape_problem(doc, shape[0], shape[1])

        return await platform_step(
            ctx,
            step,
            method,
            join_url(self.tracking_uri, api_path),
            request_timeout_s=o.request_timeout_s,
            budget_s=o.step_latency_budget_s,
            expected=expected,
            headers=bearer(key),
            params=params,
            json_body=json_body,
            check=check if shape is not None else None,
        )

    async def _experiment(self, ctx: ProbeContext, key: str, *, may_race: bool = True) -> StepResult:
        """Get the synthetic experiment by name, restoring or creating it when needed.

        Another writer (the registration probe sets the same experiment, another replica runs this
        probe) may create it between the lookup and the create: MLflow then answers 400
        ``RESOURCE_ALREADY_EXISTS``, and the experiment is looked up once more instead of failing.
        """
        o = self.options
        got = await self._call(
            ctx,
            "experiment",
            "GET",
            "/api/2.0/mlflow/experiments/get-by-name",
            key,
            params={"experiment_name": o.experiment_name},
            expected=(200, 404),
        )
        if not got.step.status.ok:
            return got.step
        doc = got.json()
        if got.step.http_status == 404:
            if not isinstance(doc, dict) or doc.get("error_code") != "RESOURCE_DOES_NOT_EXIST":
                return got.judged(
                    got.step.with_(
                        status=Status.FAIL,
                        error_class="http_status",
                        message="get-by-name answered 404 without RESOURCE_DOES_NOT_EXIST",
                    )
                )
            created = await self._call(
                ctx,
                "experiment",
                "POST",
                "/api/2.0/mlflow/experiments/create",
                key,
                json_body={"name": o.experiment_name, "tags": [{"key": o.synthetic_tag, "value": "true"}]},
            )
            body = created.json()
            if created.step.status.ok and not (isinstance(body, dict) and body.get("experiment_id")):
                return created.judged(
                    created.step.with_(
                        status=Status.FAIL, error_class="body_mismatch", message="create: no experiment_id"
                    )
                )
            if created.step.status.ok:
                return created.step.with_(message=f"created experiment {o.experiment_name!r}")
            raced = isinstance(body, dict) and body.get("error_code") == "RESOURCE_ALREADY_EXISTS"
            if may_race and created.step.http_status == 400 and raced:
                return await self._experiment(ctx, key, may_race=False)
            return created.step
        experiment = doc.get("experiment") if isinstance(doc, dict) else None
        if not isinstance(experiment, dict) or "experiment_id" not in experiment:
            return got.judged(
                got.step.with_(
                    status=Status.FAIL,
                    error_class="body_mismatch",
                    message="get-by-name: no experiment object",
                )
            )
        if experiment.get("lifecycle_stage") == "deleted":
            tags = {t.get("key"): t.get("value") for t in experiment.get("tags", []) if isinstance(t, dict)}
            if tags.get(o.synthetic_tag) != "true":
                return got.judged(
                    got.step.with_(
                        status=Status.FAIL,
                        error_class="experiment_deleted",
                        message=(
                            f"experiment {o.experiment_name!r} is deleted and not synthmon's; not restoring"
                        ),
                    )
                )
            restored = await self._call(
                ctx,
                "experiment",
                "POST",
                "/api/2.0/mlflow/experiments/restore",
                key,
                json_body={"experiment_id": experiment["experiment_id"]},
            )
            if restored.step.status.ok:
                return restored.step.with_(message=f"restored experiment {o.experiment_name!r}")
            return restored.step
        return got.step.with_(message=f"experiment {o.experiment_name!r} is {experiment['experiment_id']}")

    async def run(self, ctx: ProbeContext) -> list[StepResult]:
        """Run the four steps; after the first failure the rest are SKIPPED."""
        o = self.options
        key = ctx.secrets.get(o.api_key_secret)
        order = o.step_names()
        steps: list[StepResult] = []
        for name in order:
            failed = next((s.name for s in steps if not s.status.ok), None)
            if failed is not None:
                steps.append(skipped(name, failed))
                continue
            if name == "experiments_search":
                ex = await self._call(
                    ctx,
                    name,
                    "GET",
                    "/api/2.0/mlflow/experiments/search",
                    key,
                    params={"max_results": o.max_results},
                    shape=("experiments", ("experiment_id", "name")),
                )
                steps.append(ex.step)
            elif name == "registered_models_search":
                ex = await self._call(
                    ctx,
                    name,
                    "GET",
                    "/api/2.0/mlflow/registered-models/search",
                    key,
                    params={"max_results": o.max_results},
                    shape=("registered_models", ("name",)),
                )
                step = ex.step
                if step.status is Status.FAIL and step.http_status == 404:
                    # experiments/search just answered through the same proxy and key: it is the
                    # model registry that is not served, not the proxy's MLflow route.
                    step = step.with_(
                        error_class="model_registry_not_served",
                        message=f"{step.message}: experiments/search answers, the model registry does not",
                    )
                steps.append(step)
            elif name == "experiment":
                steps.append(await self._experiment(ctx, key))
            else:
                steps.append(
                    await client_search_step(
                        ctx,
                        name,
                        self.tracking_uri,
                        key,
                        timeout_s=o.client_timeout_s,
                        request_timeout_s=o.request_timeout_s,
                    )
                )
        return steps
