"""The auth probe: is the auth service up, does it accept our key, and does it still reject others?

Steps, in order (contract §1):

- ``health``   GET ``/health`` → 200;
- ``ready``    GET ``/ready`` → 200 (503 ``{"checks": ...}`` when its database or Redis is down);
- ``validate`` POST ``/api/v1/keys/validate`` with the monitoring key as Bearer and
  ``{"service_id": ...}``: 200, ``is_valid`` true, the returned ``service_id`` equals the expected
  one (the seed's lesson: ``platform``, not ``ml-platform``), every required scope present;
- ``rejects_invalid_key`` the same request with a well-formed random key must get 401. An auth
  service that accepts anything is a FAIL (``accepts_invalid_key``): it is the one failure that
  looks like success everywhere else.

When ``health`` cannot even connect, or the ALB has no healthy target, the other steps are
SKIPPED: they would fail the same way and say nothing new.
"""

from __future__ import annotations

from typing import Any, ClassVar

from probes.base import HttpUrlStr, PositiveDuration, ProbeContext, ProbeOptions, Status, StepResult, skipped
from probes.support.httpstep import Exchange
from probes.support.platform import bearer, invalid_key, join_url, platform_step


class AuthOptions(ProbeOptions):
    """Options of the ``auth`` kind (every value has the contract's default)."""

    auth_url: HttpUrlStr = "http://127.0.0.1:8101"
    api_key_secret: str = "api_key"
    service_id: str = "platform"
    required_scopes: tuple[str, ...] = ("read", "write")
    health_path: str = "/health"
    ready_path: str = "/ready"
    validate_path: str = "/api/v1/keys/validate"
    check_ready: bool = True
    check_rejects_invalid_key: bool = True
    request_timeout_s: PositiveDuration = 10.0
    step_latency_budget_s: PositiveDuration = 2.0

    def secret_names(self) -> set[str]:
        """The secrets this probe reads (the config checks they are defined)."""
        return {self.api_key_secret}

    def step_names(self) -> tuple[str, ...]:
        """``health``, then ``ready`` and ``rejects_invalid_key`` as configured, ``validate`` between."""
        return (
            "health",
            *(("ready",) if self.check_ready else ()),
            "validate",
            *(("rejects_invalid_key",) if self.check_rejects_invalid_key else ()),
        )


def judge_validation(step: StepResult, doc: Any, options: AuthOptions) -> StepResult:
    """Turn a 200 from ``/keys/validate`` into PASS or a FAIL with a precise error class.

    Pure: takes the HTTP step and the parsed body (None when the body was not JSON). Error classes:
    ``body_mismatch`` (not a JSON object), ``key_not_valid`` (``is_valid`` is not true),
    ``service_id_mismatch``, ``scope_missing``.
    """
    if not isinstance(doc, dict):
        return step.with_(
            status=Status.FAIL, error_class="body_mismatch", message="validate: body is not a JSON object"
        )
    if doc.get("is_valid") is not True:
        # A 200 that says no: the auth service works and rejects the key (not a broken answer).
        return step.with_(
            status=Status.FAIL,
            error_class="key_not_valid",
            message=f"validate: is_valid is {doc.get('is_valid')!r}, expected true",
        )
    got_service = doc.get("service_id")
    if got_service != options.service_id:
        return step.with_(
            status=Status.FAIL,
            error_class="service_id_mismatch",
            message=f"validate: service_id is {got_service!r}, expected {options.service_id!r}",
        )
    scopes = doc.get("scopes")
    have = {str(s) for s in scopes} if isinstance(scopes, list) else set()
    missing = [s for s in options.required_scopes if s not in have]
    if missing:
        return step.with_(
            status=Status.FAIL,
            error_class="scope_missing",
            message=f"validate: key lacks scope(s) {', '.join(missing)}",
        )
    return step


class AuthProbe:
    """Checks the auth service: health, readiness, our key, and rejection of an invalid key."""

    Options: ClassVar[type[ProbeOptions]] = AuthOptions
    isolated: ClassVar[bool] = False

    def __init__(self, name: str, options: AuthOptions) -> None:
        self.name = name
        self.options = options

    async def _get(self, ctx: ProbeContext, step: str, path: str) -> Exchange:
        o = self.options
        return await platform_step(
            ctx,
            step,
            "GET",
            join_url(o.auth_url, path),
            request_timeout_s=o.request_timeout_s,
            budget_s=o.step_latency_budget_s,
        )

    async def _validate(self, ctx: ProbeContext, step: str, key: str, expected: tuple[int, ...]) -> Exchange:
        o = self.options
        return await platform_step(
            ctx,
            step,
            "POST",
            join_url(o.auth_url, o.validate_path),
            request_timeout_s=o.request_timeout_s,
            budget_s=o.step_latency_budget_s,
            expected=expected,
            headers=bearer(key),
            json_body={"service_id": o.service_id},
        )

    async def run(self, ctx: ProbeContext) -> list[StepResult]:
        """Run the four steps; see the module docstring."""
        o = self.options
        key = ctx.secrets.get(o.api_key_secret)
        steps: list[StepResult] = []

        health = await self._get(ctx, "health", o.health_path)
        steps.append(health.step)
        later = list(o.step_names()[1:])
        if health.response is None or health.step.error_class == "alb_503":
            # Unreachable (refused, DNS, TLS, timeout) or no healthy target behind the ALB:
            # every later step would repeat this.
            return steps + [skipped(n, "health") for n in later]

        if o.check_ready:
            steps.append((await self._get(ctx, "ready", o.ready_path)).step)

        validate = await self._validate(ctx, "validate", key, (200,))
        step = validate.step
        if step.status.ok:
            # A wrong service_id or missing scope keeps the answer as evidence; a pass does not.
            step = validate.judged(judge_validation(step, validate.json(), o))
        steps.append(step)

        if o.check_rejects_invalid_key:
            rejected = await self._validate(ctx, "rejects_invalid_key", invalid_key(), (401,))
            step = rejected.step
            doc = rejected.json()
            if step.http_status == 200 and isinstance(doc, dict) and doc.get("is_valid") is True:
                step = step.with_(
                    error_class="accepts_invalid_key",
                    message="SECURITY: the auth service validated a deliberately invalid key",
                )
            steps.append(step)
        return steps
