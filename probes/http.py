"""The generic ``http`` probe kind: one request, judged on status, body and latency.

It exists so the daemon can watch any HTTP endpoint (and so the core is tested end to end before
the platform probes exist). One run is one step, made by :func:`probes.support.httpstep.http_step`, so
timing phases, error classes and diagnosis facts are recorded the same way as in every other probe.

Header values that are secrets are never written in config: ``bearer_secret: api_key`` sends
``Authorization: Bearer <secret api_key>``, and ``secret_headers: {X-API-Key: api_key}`` sends a
secret under any header name.

"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, field_validator, model_validator

from probes.base import HttpUrlStr, PositiveDuration, ProbeContext, ProbeOptions, StepResult
from probes.support.httpstep import check_body, http_step

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class HttpOptions(ProbeOptions):
    """Options of the ``http`` kind."""

    url: HttpUrlStr
    method: HttpMethod = "GET"
    #: Plain (non-secret) request headers.
    headers: dict[str, str] = Field(default_factory=dict)
    #: Name of a configured secret sent as ``Authorization: Bearer <value>``.
    bearer_secret: str | None = None
    #: Header name -> name of a configured secret sent as that header's value.
    secret_headers: dict[str, str] = Field(default_factory=dict)
    #: A JSON request body.
    json_body: Any = None
    expected_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    #: Dotted JSON path -> expected value, e.g. ``{"status": "healthy", "checks.database": true}``.
    json_equals: dict[str, Any] | None = None
    #: A regular expression the body must match somewhere.
    body_regex: str | None = None
    #: The step is DEGRADED when the exchange takes longer than this.
    latency_budget: PositiveDuration | None = None
    follow_redirects: bool = False
    #: Name of the single step in results and metrics.
    step: str = Field(default="request", pattern=r"^[a-z0-9_]+$")

    @field_validator("expected_status")
    @classmethod
    def _statuses(cls, statuses: list[int]) -> list[int]:
        bad = [s for s in statuses if not 100 <= s <= 599]
        if bad:
            raise ValueError(f"HTTP statuses are 100-599, got {bad}")
        return statuses

    @field_validator("body_regex")
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _no_secret_in_plain_headers(self) -> HttpOptions:
        # A literal Authorization header in config would put a credential in a file and in
        # `check-config` output; force it through the secrets table instead.
        for header in self.headers:
            if header.lower() in ("authorization", "x-api-key"):
                raise ValueError(
                    f"header {header!r} carries a credential: use bearer_secret or secret_headers instead"
                )
        return self

    def secret_names(self) -> set[str]:
        """The configured secrets this probe reads (the config checks they exist)."""
        names = set(self.secret_headers.values())
        if self.bearer_secret:
            names.add(self.bearer_secret)
        return names

    def step_names(self) -> tuple[str, ...]:
        """The one step, named by ``step``."""
        return (self.step,)


class HttpProbe:
    """Sends one request per run and judges status, body and latency."""

    Options: ClassVar[type[ProbeOptions]] = HttpOptions
    isolated: ClassVar[bool] = False

    def __init__(self, name: str, options: HttpOptions) -> None:
        self.name = name
        self.options = options

    async def run(self, ctx: ProbeContext) -> list[StepResult]:
        """One step: the request and its verdict."""
        opts = self.options
        headers = dict(opts.headers)
        if opts.bearer_secret:
            headers["Authorization"] = f"Bearer {ctx.secrets.get(opts.bearer_secret)}"
        for header, secret in opts.secret_headers.items():
            headers[header] = ctx.secrets.get(secret)

        def check(_response: httpx.Response, body: bytes) -> str | None:
            return check_body(body, json_equals=opts.json_equals, regex=opts.body_regex)

        exchange = await http_step(
            ctx,
            opts.step,
            opts.method,
            opts.url,
            expected=opts.expected_status,
            headers=headers,
            json_body=opts.json_body,
            budget_s=opts.latency_budget,
            follow_redirects=opts.follow_redirects,
            check=check if (opts.json_equals or opts.body_regex) else None,
        )
        return [exchange.step]
