"""The registration probe: register a model end to end with the MLflow client, as users do.

Steps (contract §5): ``set_experiment``, ``train`` (LogisticRegression, fixed seed, generated
data, no network), ``log_model`` (the artifact upload), ``register`` (model version tagged
``synthmon.synthetic=true``, the synthmon run id, and the configured platform tags),
``wait_ready`` (bounded), ``load`` (``models:/<name>/<version>``: the artifact download),
``predict`` (known input → the logged model's own output), ``cleanup`` (delete this run's version,
logged model and run, then sweep synthetic leftovers older than ``ttl``). After a failure the
remaining steps are SKIPPED, except ``cleanup``, which runs whenever the experiment was reached.

The probe is ``isolated``: the runner runs all of it in a subprocess with a hard deadline, so the
daemon never imports mlflow and a hang or leak in the client cannot touch it. The work itself is
in :mod:`probes.support.registration_child`; this module only builds the payload and reads the answer.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import Field

from probes.base import HttpUrlStr, PositiveDuration, ProbeContext, ProbeOptions, StepResult
from probes.support.platform import join_url

#: Seconds (at least) and share of the remaining time kept back for the child to hand over its
#: answer and exit before the parent's hard kill.
ANSWER_MARGIN_S = 3.0
ANSWER_MARGIN_SHARE = 0.05


class RegistrationOptions(ProbeOptions):
    """Options of the ``registration`` kind."""

    registry_url: HttpUrlStr = "http://127.0.0.1:8102"
    mlflow_path: str = "/api/mlflow"
    api_key_secret: str = "api_key"
    experiment_name: str = "synthmon-synthetic"
    model_name: str = "synthmon-synthetic"
    synthetic_tag: str = "synthmon.synthetic"
    run_tag: str = "synthmon.run_id"
    #: Model-version tags the platform SDK sets; ``benchmark_value`` is filled from the accuracy.
    platform_tags: dict[str, str] = Field(
        default_factory=lambda: {
            "hokusai_token_id": "synthmon-synthetic",
            "benchmark_metric": "accuracy",
            "hokusai_status": "registered",
        }
    )
    seed: int = 42
    #: Synthetic leftovers older than this are swept (a run killed mid-way leaves some).
    ttl: PositiveDuration = 3600.0
    #: Bounded READY wait; below the daemon's default 30 s probe timeout (and capped by the run's).
    wait_ready_timeout: PositiveDuration = 20.0
    request_timeout: PositiveDuration = 30.0
    #: Kept back from the run's budget for ``cleanup`` (at most a quarter of it).
    cleanup_timeout: PositiveDuration = 20.0
    #: The MLflow client's own HTTP retries; 0 so a 503 is reported as such, not after backoff.
    max_retries: int = Field(default=0, ge=0, le=10)

    def secret_names(self) -> set[str]:
        """The secrets this probe reads (the config checks they are defined)."""
        return {self.api_key_secret}

    def step_names(self) -> tuple[str, ...]:
        """The child's steps (:data:`probes.support.registration_child.STEP_NAMES`)."""
        from probes.support.registration_child import STEP_NAMES  # no mlflow: imported on use there

        return STEP_NAMES


class RegistrationProbe:
    """Registers, loads and deletes a synthetic model through the proxy; see the module docstring."""

    Options: ClassVar[type[ProbeOptions]] = RegistrationOptions
    isolated: ClassVar[bool] = True

    def __init__(self, name: str, options: RegistrationOptions) -> None:
        self.name = name
        self.options = options

    def payload(self, ctx: ProbeContext) -> dict[str, Any]:
        """The child's input. It holds the API key: it travels on stdin only, never argv or logs.

        ``budget_s`` is what is left of the run, minus time to hand the answer back: the child
        returns its steps (a slow one as FAIL ``timeout``) before the parent's hard kill.
        """
        o = self.options
        remaining = ctx.remaining()
        return {
            "budget_s": max(1.0, remaining - max(ANSWER_MARGIN_S, ANSWER_MARGIN_SHARE * remaining)),
            "cleanup_timeout_s": o.cleanup_timeout,
            "tracking_uri": join_url(o.registry_url, o.mlflow_path),
            "api_key": ctx.secrets.get(o.api_key_secret),
            "experiment_name": o.experiment_name,
            "model_name": o.model_name,
            "synthetic_tag": o.synthetic_tag,
            "run_tag": o.run_tag,
            "run_id": ctx.run_id,
            "platform_tags": dict(o.platform_tags),
            "seed": o.seed,
            "ttl_s": o.ttl,
            "now_ms": int(ctx.clock.now().timestamp() * 1000),
            "wait_ready_timeout_s": min(o.wait_ready_timeout, max(1.0, ctx.remaining() - 5.0)),
            "request_timeout_s": max(1, int(min(o.request_timeout, max(1.0, ctx.remaining() - 2.0)))),
            "max_retries": o.max_retries,
        }

    async def run(self, ctx: ProbeContext) -> list[StepResult]:
        """Run the eight steps (blocking MLflow client calls, off the event loop in one thread)."""
        from probes.support.registration_child import run_registration

        answer = await asyncio.to_thread(run_registration, self.payload(ctx))
        return [StepResult.from_dict(d) for d in answer]
