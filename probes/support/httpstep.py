"""One HTTP exchange as one step: timing phases, expected statuses, body conditions, capped bodies.

Every probe that speaks HTTP goes through :func:`http_step`, so that timing, error classes and the
facts diagnosis matches on (status, path, body excerpt, content type) are recorded the same way
everywhere. Transport failures become FAIL steps with a bounded ``error_class``; they never escape
as exceptions. The URL's query string is never recorded (it may carry ``?api_key=``).

Only a failing step keeps a ``body_excerpt``: a successful answer is not evidence of anything,
and it can hold personal data (``/keys/validate`` returns the key owner's ``user_id`` and
``email``) that would otherwise be stored and served by the history API on every run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from probes.base import HttpTiming, ProbeContext, Status, StepResult

#: Bodies larger than this are not read whole (a broken target must not exhaust our memory).
DEFAULT_MAX_BODY = 1024 * 1024
#: How much of a body is kept for diagnosis and messages.
EXCERPT_CHARS = 300

# (exception type, error_class). Order matters: subclasses first.
_TRANSPORT_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (httpx.ConnectTimeout, "connect_timeout"),
    (httpx.ReadTimeout, "read_timeout"),
    (httpx.WriteTimeout, "write_timeout"),
    (httpx.PoolTimeout, "pool_timeout"),
    (httpx.TimeoutException, "timeout"),
    (httpx.ConnectError, "connect_error"),
    (httpx.RemoteProtocolError, "protocol_error"),
    (httpx.ReadError, "read_error"),
    (httpx.WriteError, "write_error"),
    (httpx.TooManyRedirects, "too_many_redirects"),
    (httpx.UnsupportedProtocol, "unsupported_protocol"),
    (httpx.TransportError, "transport_error"),
)


def classify_transport_error(exc: BaseException) -> str:
    """A bounded error class for an httpx transport exception (TLS and DNS failures included)."""
    text = str(exc).lower()
    if isinstance(exc, httpx.ConnectError):
        if "certificate" in text or "ssl" in text or "tls" in text:
            return "tls_error"
        if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            return "dns_error"
        if "temporary failure in name resolution" in text or "name resolution" in text:
            return "dns_error"
    if isinstance(exc, httpx.ReadError | httpx.RemoteProtocolError) and "reset" in text:
        return "connection_reset"
    for cls, code in _TRANSPORT_ERRORS:
        if isinstance(exc, cls):
            return code
    return type(exc).__name__


class _Trace:
    """Collects httpcore trace events into connect / TLS / time-to-first-byte phases."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.start = clock()
        self.marks: dict[str, float] = {}

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        # Event names: "connection.connect_tcp.started", "http11.receive_response_headers.complete", ...
        self.marks.setdefault(event, self._clock())

    def _span(self, prefix: str) -> float | None:
        a, b = self.marks.get(prefix + ".started"), self.marks.get(prefix + ".complete")
        return b - a if a is not None and b is not None else None

    def timing(self, total: float) -> HttpTiming:
        ttfb = None
        for proto in ("http11", "http2"):
            done = self.marks.get(f"{proto}.receive_response_headers.complete")
            if done is not None:
                ttfb = done - self.start
        return HttpTiming(
            connect_s=self._span("connection.connect_tcp"),
            tls_s=self._span("connection.start_tls"),
            ttfb_s=ttfb,
            total_s=total,
        )


@dataclass(frozen=True, slots=True)
class Exchange:
    """What a probe gets back from :func:`http_step`: the step, and the response when there was one."""

    step: StepResult
    response: httpx.Response | None
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (callers turn that into a FAIL)."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def judged(self, step: StepResult) -> StepResult:
        """``step`` (this exchange's step after the caller's own checks) with the excerpt rule applied.

        A caller that turns a passing exchange into a FAIL (a wrong ``service_id``, a missing
        listing) gets the body excerpt back as evidence; an ok step never carries one.
        """
        return with_excerpt_rule(step, self.body)


def excerpt(body: bytes, limit: int = EXCERPT_CHARS) -> str:
    """The first ``limit`` characters of a body, decoded leniently, whitespace folded."""
    text = body[: limit * 4].decode("utf-8", errors="replace")
    return " ".join(text.split())[:limit]


def with_excerpt_rule(step: StepResult, body: bytes) -> StepResult:
    """``step`` with a body excerpt when it failed (FAIL/ERROR), and without one when it is ok.

    DEGRADED counts as ok: a slow answer is still a successful one, with the same content.
    """
    if step.status in (Status.FAIL, Status.ERROR):
        return step if step.body_excerpt else step.with_(body_excerpt=excerpt(body) if body else None)
    return step.with_(body_excerpt=None) if step.body_excerpt is not None else step


def json_path(doc: Any, path: str) -> Any:
    """A value from ``doc`` by a dotted path (``checks.database``, ``scopes.0``); KeyError when absent."""
    cur = doc
    for part in [p for p in path.split(".") if p]:
        if isinstance(cur, list) and part.isdigit():
            idx = int(part)
            if idx >= len(cur):
                raise KeyError(path)
            cur = cur[idx]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise KeyError(path)
    return cur


def check_body(
    body: bytes, *, json_equals: Mapping[str, Any] | None = None, regex: str | None = None
) -> str | None:
    """None when ``body`` meets every condition, else a one-line reason.

    ``json_equals`` maps dotted JSON paths to expected values; ``regex`` must match somewhere.
    """
    if regex is not None and not re.search(regex, body.decode("utf-8", errors="replace")):
        return f"body does not match /{regex}/"
    if json_equals:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return "body is not JSON"
        for path, want in json_equals.items():
            try:
                got = json_path(doc, path)
            except KeyError:
                return f"JSON path {path!r} is missing"
            if got != want:
                return f"JSON path {path!r} is {got!r}, expected {want!r}"
    return None


async def http_step(
    ctx: ProbeContext,
    name: str,
    method: str,
    url: str,
    *,
    expected: Iterable[int] = (200,),
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    content: bytes | None = None,
    timeout_s: float | None = None,
    budget_s: float | None = None,
    follow_redirects: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    check: Callable[[httpx.Response, bytes], str | None] | None = None,
) -> Exchange:
    """Send one request and judge it.

    FAIL when the status is not in ``expected``, when ``check(response, body)`` returns a reason, or
    on a transport error (with its class). DEGRADED when it passed but took longer than ``budget_s``.
    ``timeout_s`` defaults to what is left of the run's deadline, so the probe, not the runner,
    reports a slow platform.
    """
    clock = ctx.clock.monotonic
    trace = _Trace(clock)
    path = httpx.URL(url).path
    expected_set = set(expected)
    timeout = timeout_s if timeout_s is not None else max(0.1, ctx.remaining() - 0.5)
    start = clock()
    request = ctx.http.build_request(
        method,
        url,
        headers=dict(headers or {}),
        params=params,
        json=json_body,
        content=content,
        timeout=timeout,
        extensions={"trace": trace},
    )
    try:
        response = await ctx.http.send(request, stream=True, follow_redirects=follow_redirects)
        try:
            chunks: list[bytes] = []
            size = 0
            truncated = False
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > max_body:
                    truncated = True
                    break
            body = b"".join(chunks)[:max_body]
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        elapsed = clock() - start
        error_class = classify_transport_error(exc)
        step = StepResult(
            name=name,
            status=Status.FAIL,
            duration_s=elapsed,
            error_class=error_class,
            message=f"{method} {path}: {error_class.replace('_', ' ')} after {elapsed:.2f}s",
            path=path,
            timing=trace.timing(elapsed),
        )
        return Exchange(step, None, b"")

    elapsed = clock() - start
    content_type = response.headers.get("content-type", "").split(";")[0].strip() or None
    base = StepResult(
        name=name,
        status=Status.PASS,
        duration_s=elapsed,
        http_status=response.status_code,
        path=path,
        body_excerpt=excerpt(body),
        content_type=content_type,
        timing=trace.timing(elapsed),
    )
    if response.status_code not in expected_set:
        want = "/".join(str(s) for s in sorted(expected_set))
        step = base.with_(
            status=Status.FAIL,
            error_class="http_status",
            message=f"{method} {path} answered {response.status_code}, expected {want}",
        )
        return Exchange(step, response, body)
    if truncated:
        step = base.with_(
            status=Status.FAIL,
            error_class="body_too_large",
            message=f"{method} {path}: body larger than {max_body} bytes",
        )
        return Exchange(step, response, body)
    reason = check(response, body) if check is not None else None
    if reason is not None:
        step = base.with_(
            status=Status.FAIL, error_class="body_mismatch", message=f"{method} {path}: {reason}"
        )
        return Exchange(step, response, body)
    # Passing from here on: the excerpt is dropped (see the module docstring).
    if budget_s is not None and elapsed > budget_s:
        step = base.with_(
            status=Status.DEGRADED,
            error_class="slow",
            message=f"{method} {path} took {elapsed:.2f}s, budget {budget_s:.2f}s",
            body_excerpt=None,
        )
        return Exchange(step, response, body)
    step = base.with_(message=f"{method} {path} answered {response.status_code}", body_excerpt=None)
    return Exchange(step, response, body)
