"""Daemon side of the MLflow client check: one isolated ``search_experiments`` call as one step.

Used by ``mlflow_api`` (step ``client_search``) and ``alb_health`` (the seed's check #10). The client
runs in a subprocess (:mod:`probes.support.mlflow_child`) so the daemon never imports mlflow.
"""

from __future__ import annotations

from probes.base import ProbeContext, Status, StepResult
from probes.support.masking import SecretMasker

#: Seconds kept back from the run's deadline so the probe, not the runner, reports a hang.
_MARGIN_S = 1.0
#: How much of a crashed child's stderr goes into the step message (its last lines).
CRASH_TAIL_CHARS = 600


def crash_tail(stderr: str, secrets: list[str], limit: int = CRASH_TAIL_CHARS) -> str:
    """The last non-empty lines of a crashed child's stderr, secrets masked, folded to one line.

    The child masks its own writes, but not what reaches fd 2 before its masking is set up (or
    from C code), so the parent masks again before anything is shown or stored.
    """
    text = SecretMasker(secrets).mask(stderr)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    tail = " | ".join(lines)
    return tail[-limit:]


async def client_search_step(
    ctx: ProbeContext,
    name: str,
    tracking_uri: str,
    api_key: str,
    *,
    timeout_s: float,
    request_timeout_s: float = 20.0,
) -> StepResult:
    """Run ``MlflowClient().search_experiments(max_results=1)`` in a subprocess, as step ``name``.

    A client exception is a FAIL with the HTTP facts it carried; running past ``timeout_s`` (or the
    run's deadline) is a FAIL ``timeout``; a child that dies without answering is an ERROR (the
    monitor could not run the check).
    """
    budget = max(1.0, min(timeout_s, ctx.remaining() - _MARGIN_S))
    payload = {
        "tracking_uri": tracking_uri,
        "api_key": api_key,
        "step": name,
        "request_timeout_s": max(1, int(min(request_timeout_s, budget))),
        "budget_s": budget,
    }
    # Imported here, not at module level: ``python -m probes.support.isolation`` imports the ``probes``
    # package first, and a module-level import would load probes.support.isolation twice in the child.
    from probes.support.isolation import IsolationCrash, IsolationTimeout, run_isolated

    start = ctx.clock.monotonic()
    try:
        answer = await run_isolated(
            "probes.support.mlflow_child:search_experiments", payload, budget, zygote=ctx.zygote
        )
    except IsolationTimeout:
        return StepResult(
            name=name,
            status=Status.FAIL,
            duration_s=ctx.clock.monotonic() - start,
            error_class="timeout",
            message=f"MLflow client search_experiments still running after {budget:.1f}s (timeout)",
        )
    except IsolationCrash as exc:
        message = f"MLflow client subprocess died without an answer: {exc}"
        tail = crash_tail(exc.stderr_tail, [api_key, *ctx.secrets.values()])
        if tail:
            message += f"; stderr: {tail}"
        return StepResult(
            name=name,
            status=Status.ERROR,
            duration_s=ctx.clock.monotonic() - start,
            error_class="subprocess_crash",
            message=message,
        )
    return StepResult.from_dict(answer.value)
