"""Body excerpts are evidence of a failure only: passing steps never carry the answer's content."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from probes_helpers import make_ctx, mock

from probes.auth import AuthOptions, AuthProbe
from probes.base import Status
from probes.support.httpstep import http_step

_VALIDATE_ANSWER = {
    "is_valid": True,
    "key_id": "key_123",
    "user_id": "user_456",
    "email": "owner@example.test",
    "service_id": "platform",
    "scopes": ["read", "write"],
}


def _auth_platform(service_id: str) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/keys/validate"):
            if "synthmonINVALID" in request.headers.get("authorization", ""):
                return httpx.Response(401, json={"detail": "Invalid or expired API key"})
            return httpx.Response(200, json={**_VALIDATE_ANSWER, "service_id": service_id})
        return httpx.Response(200, json={"status": "healthy"})

    return handler


async def test_passing_validate_keeps_no_excerpt_of_the_key_owner() -> None:
    """A PASS validate step stores no body excerpt: the owner's email and user id go nowhere."""
    ctx = make_ctx(mock(_auth_platform("platform")))
    async with ctx.http:
        steps = await AuthProbe("auth", AuthOptions()).run(ctx)
    validate = next(s for s in steps if s.name == "validate")
    assert validate.status is Status.PASS
    assert validate.body_excerpt is None
    passing = json.dumps([s.to_dict() for s in steps if s.status is Status.PASS])
    assert "owner@example.test" not in passing
    assert "user_456" not in passing


async def test_validate_judged_wrong_keeps_the_answer_as_evidence() -> None:
    """A validate answer judged wrong (service_id mismatch) is a FAIL that keeps the body excerpt."""
    ctx = make_ctx(mock(_auth_platform("ml-platform")))
    async with ctx.http:
        steps = await AuthProbe("auth", AuthOptions()).run(ctx)
    validate = next(s for s in steps if s.name == "validate")
    assert (validate.status, validate.error_class) == (Status.FAIL, "service_id_mismatch")
    assert validate.body_excerpt is not None
    assert "ml-platform" in validate.body_excerpt


@pytest.mark.parametrize(
    ("status", "budget_s", "expected", "has_excerpt"),
    [
        (200, None, Status.PASS, False),
        (200, 0.0, Status.DEGRADED, False),
        (503, None, Status.FAIL, True),
    ],
    ids=["pass", "degraded", "fail"],
)
async def test_http_step_excerpt_only_on_failure(
    status: int, budget_s: float | None, expected: Status, has_excerpt: bool
) -> None:
    """http_step drops the excerpt of PASS and DEGRADED (slow but successful) answers, keeps FAIL's."""
    ctx = make_ctx(mock(lambda _r: httpx.Response(status, json={"email": "owner@example.test"})))
    async with ctx.http:
        exchange = await http_step(ctx, "s", "GET", "http://auth.test/x", budget_s=budget_s)
    assert exchange.step.status is expected
    assert (exchange.step.body_excerpt is not None) is has_excerpt
    assert exchange.body  # the caller still gets the whole body to judge
