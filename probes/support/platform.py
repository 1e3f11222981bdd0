"""Small helpers shared by the five platform probes (URLs, keys, per-request timeouts).

Kept apart from ``probes/base.py`` (the shared contract) because these encode the monitored
platform's conventions, not the probe contract.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import replace
from typing import Any

from probes.base import ProbeContext, Status, StepResult
from probes.support.httpstep import Exchange, http_step


def join_url(base: str, path: str) -> str:
    """``base`` + ``path`` with exactly one slash between them (bases come from env vars)."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def bearer(key: str) -> dict[str, str]:
    """The Authorization header the platform prefers (MLflow's client sends the same)."""
    return {"Authorization": f"Bearer {key}"}


def invalid_key() -> str:
    """A well-formed key that cannot exist: ``hk_test_`` + 32 random characters, marked as synthmon's.

    Random so that an auth cache cannot answer for it; well-formed so that the auth service has to
    look it up instead of rejecting the format.
    """
    alphabet = string.ascii_letters + string.digits
    return "hk_test_" + "synthmonINVALID" + "".join(secrets.choice(alphabet) for _ in range(17))


def request_timeout(ctx: ProbeContext, per_request_s: float) -> float:
    """A request's timeout: its own budget, but never past the run's deadline (minus a margin)."""
    return max(0.1, min(per_request_s, ctx.remaining() - 0.5))


def classify_503(step: StepResult) -> StepResult:
    """Tell an ALB-generated 503 (HTML, no healthy target) from an application 503 (JSON)."""
    if step.status is not Status.FAIL or step.http_status != 503:
        return step
    body = step.body_excerpt or ""
    if step.content_type == "text/html" or "Service Temporarily Unavailable" in body:
        return step.with_(
            error_class="alb_503",
            message=f"{step.message}: ALB-generated 503 (HTML): no healthy target",
        )
    if step.content_type == "application/json":
        return step.with_(message=f"{step.message}: application 503 (JSON), not the ALB")
    return step


async def platform_step(
    ctx: ProbeContext,
    name: str,
    method: str,
    url: str,
    *,
    request_timeout_s: float,
    budget_s: float | None,
    **kw: Any,
) -> Exchange:
    """One HTTP step against the platform, the way every platform probe sends it.

    The request gets ``request_timeout_s`` but never runs past the run's deadline, and a 503 is
    told apart as ALB-generated or application (:func:`classify_503`). ``kw`` are the other
    keyword arguments of :func:`probes.support.httpstep.http_step` (``expected``, ``headers``, ...).
    """
    exchange = await http_step(
        ctx,
        name,
        method,
        url,
        timeout_s=request_timeout(ctx, request_timeout_s),
        budget_s=budget_s,
        **kw,
    )
    return replace(exchange, step=classify_503(exchange.step))
