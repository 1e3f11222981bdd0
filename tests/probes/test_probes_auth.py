"""The ``auth`` kind: judging key validation, the any-key security check, the request it sends."""

from __future__ import annotations

import json

import httpx
import pytest
from probes_helpers import make_ctx, mock

from monitor.diagnosis import diagnose
from probes.auth import AuthOptions, AuthProbe, judge_validation
from probes.base import Status, StepResult
from probes.support.platform import invalid_key


def _step(**kw: object) -> StepResult:
    base: dict[str, object] = {"name": "s", "status": Status.FAIL}
    base.update(kw)
    return StepResult(**base)  # type: ignore[arg-type]


# --- auth ----------------------------------------------------------------------------------------

GOOD = {"is_valid": True, "service_id": "platform", "scopes": ["read", "write"], "user_id": "admin"}
VALIDATION_CASES = {
    "valid": (GOOD, Status.PASS, None),
    "not_object": ([1, 2], Status.FAIL, "body_mismatch"),
    "is_valid_false": ({**GOOD, "is_valid": False}, Status.FAIL, "key_not_valid"),
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
