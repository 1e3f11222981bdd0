"""One HTTP exchange as one step: timing phases, expected statuses, body conditions, capped bodies.

Every probe that speaks HTTP goes through :func:`http_step`, so that timing, error classes and the
facts diagnosis matches on (status, path, body excerpt, content type) are recorded the same way
everywhere. Transport failures become FAIL steps with a bounded ``error_class``; they never escape
as exceptions. The URL's query string is never recorded (it may carry ``?api_key=``).

A transport failure's message names what happened and where (``connection reset by
10.0.3.7:443``): the OS error under httpx's exception decides the class (``connection_reset``,
``broken_pipe``, ``connect_error``, ``tls_error``, ``dns_error``), a peer that hung up before or
during its answer is ``connection_closed``, and the monitor running out of file descriptors or
memory is an ERROR (``local_resource_error``), not a FAIL of the platform.

Only a failing step keeps a ``body_excerpt``: a successful answer is not evidence of anything,
and it can hold personal data (``/keys/validate`` returns the key owner's ``user_id`` and
``email``) that would otherwise be stored and served by the history API on every run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from probes.base import HttpTiming, ProbeContext, Status, StepResult
from probes.support.netbackend import WIRE_TIMING, WireTiming

#: Bodies larger than this are not read whole (a broken target must not exhaust our memory).
DEFAULT_MAX_BODY = 1024 * 1024
#: How much of a body is kept for diagnosis and messages.
EXCERPT_CHARS = 300

# (exception type, error_class, what happened). Order matters: subclasses first.
_TRANSPORT_ERRORS: tuple[tuple[type[BaseException], str, str], ...] = (
    (httpx.ConnectTimeout, "connect_timeout", "connect timeout: no connection to {where} in time"),
    (httpx.ReadTimeout, "read_timeout", "read timeout: {where} did not answer in time"),
    (httpx.WriteTimeout, "write_timeout", "write timeout: {where} did not take the request in time"),
    (httpx.PoolTimeout, "pool_timeout", "pool timeout: no free connection to {where}"),
    (httpx.TimeoutException, "timeout", "timeout talking to {where}"),
    (httpx.ConnectError, "connect_error", "cannot connect to {where}"),
    (httpx.RemoteProtocolError, "protocol_error", "{where} broke the HTTP protocol"),
    (httpx.LocalProtocolError, "local_protocol_error", "the request to {where} is not valid HTTP"),
    (httpx.ReadError, "read_error", "read error from {where}"),
    (httpx.WriteError, "write_error", "write error to {where}"),
    (httpx.CloseError, "close_error", "error closing the connection to {where}"),
    (httpx.ProxyError, "proxy_error", "the proxy refused the connection to {where}"),
    (httpx.UnsupportedProtocol, "unsupported_protocol", "unsupported URL scheme for {where}"),
    (httpx.DecodingError, "decoding_error", "{where} sent a body that does not decode"),
    (httpx.TooManyRedirects, "too_many_redirects", "too many redirects from {where}"),
    (httpx.NetworkError, "network_error", "network error talking to {where}"),
    (httpx.TransportError, "transport_error", "transport error talking to {where}"),
)

#: errno -> (error_class, what happened); looked up on the OS error under httpx's exception.
_ERRNO_CLASSES: dict[int, tuple[str, str]] = {
    errno.ECONNRESET: ("connection_reset", "connection reset by {where}"),
    errno.ECONNABORTED: ("connection_reset", "connection to {where} aborted"),
    errno.EPIPE: ("broken_pipe", "broken pipe: {where} closed the connection while the request was sent"),
    errno.ECONNREFUSED: ("connect_error", "connection refused by {where}"),
    errno.EHOSTUNREACH: ("connect_error", "no route to {where}"),
    errno.ENETUNREACH: ("connect_error", "network unreachable for {where}"),
    errno.ETIMEDOUT: ("connect_timeout", "connection to {where} timed out"),
}
#: The monitor's own machine ran out of something: ERROR, never blamed on the platform.
_LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EADDRNOTAVAIL})

_CLOSED_EARLY = re.compile(r"server disconnected without sending a response", re.I)
_CLOSED_MID_BODY = re.compile(
    r"peer closed connection without sending complete message body(?: \(([^)]*)\))?", re.I
)


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """What a transport exception means: a bounded ``error_class``, and a sentence naming host:port.

    ``local`` is true when the monitor's own machine failed (out of file descriptors or memory):
    the step is then ERROR, the monitor's problem, not a FAIL of the platform.
    """

    error_class: str
    detail: str
    local: bool = False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions under it (httpx wraps httpcore wraps anyio wraps the OS error)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(seen) < 16:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _where(exc: BaseException, url: httpx.URL | None) -> str:
    """``host:port`` of the request that failed (a redirect's target when it was that one)."""
    with contextlib.suppress(RuntimeError):  # an exception raised without its request
        url = exc.request.url if isinstance(exc, httpx.RequestError) else url
    if url is None or not url.host:
        return "the target"
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = url.port or {"https": 443, "http": 80}.get(url.scheme)
    return f"{host}:{port}" if port else host


def _text(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def transport_failure(exc: BaseException, url: httpx.URL | None = None) -> TransportFailure:
    """The class and a one-line description of a transport exception, never empty.

    The OS error under the httpx exception decides first (a reset shows as an empty ``ReadError``
    whose cause is ``ConnectionResetError``); then the texts httpx/h11 use for a peer that closed
    early; then the exception type.
    """
    where = _where(exc, url)
    chain = list(_chain(exc))
    if isinstance(exc, httpx.TimeoutException):
        for cls, error_class, detail in _TRANSPORT_ERRORS:
            if isinstance(exc, cls):
                return TransportFailure(error_class, detail.format(where=where))
    for err in chain:
        if isinstance(err, ssl.SSLEOFError | ssl.SSLZeroReturnError) and not isinstance(
            exc, httpx.ConnectError
        ):
            # The TLS layer's way of saying "closed mid-response", after a good handshake.
            return TransportFailure("connection_closed", f"{where} closed the TLS connection mid-response")
        if isinstance(err, ssl.SSLError):
            reason = getattr(err, "reason", None) or _text(err) or type(err).__name__
            return TransportFailure("tls_error", f"TLS handshake with {where} failed: {reason}")
        if isinstance(err, socket.gaierror):
            return TransportFailure(
                "dns_error", f"cannot resolve the host of {where}: {err.strerror or _text(err)}"
            )
    for err in chain:
        number = err.errno if isinstance(err, OSError) else None
        if number is None:
            continue
        if number in _LOCAL_ERRNOS:
            return TransportFailure(
                "local_resource_error",
                f"the monitor could not talk to {where}: {os.strerror(number)}",
                local=True,
            )
        if number in _ERRNO_CLASSES:
            error_class, detail = _ERRNO_CLASSES[number]
            return TransportFailure(error_class, detail.format(where=where))
    text = " | ".join(_text(e) for e in chain if _text(e))
    lowered = text.lower()
    if isinstance(exc, httpx.ConnectError) and (
        "certificate" in lowered or "ssl" in lowered or "tls" in lowered
    ):
        return TransportFailure("tls_error", f"TLS handshake with {where} failed: {_text(exc)}")
    if isinstance(exc, httpx.ConnectError) and re.search(
        r"name or service not known|nodename nor servname|getaddrinfo|name resolution", lowered
    ):
        return TransportFailure("dns_error", f"cannot resolve the host of {where}: {_text(exc)}")
    if isinstance(exc, httpx.TransportError) and "reset" in lowered:
        return TransportFailure("connection_reset", f"connection reset by {where}")
    if isinstance(exc, httpx.TransportError) and ("broken pipe" in lowered or "errno 32" in lowered):
        return TransportFailure(
            "broken_pipe", f"broken pipe: {where} closed the connection while the request was sent"
        )
    if isinstance(exc, httpx.ConnectError) and "refused" in lowered:
        return TransportFailure("connect_error", f"connection refused by {where}")
    if isinstance(exc, httpx.RemoteProtocolError):
        if _CLOSED_EARLY.search(text):
            return TransportFailure("connection_closed", f"{where} closed the connection without answering")
        mid_body = _CLOSED_MID_BODY.search(_text(exc))
        if mid_body:
            got = f" ({mid_body.group(1)})" if mid_body.group(1) else ""
            return TransportFailure("connection_closed", f"{where} closed the connection mid-response{got}")
    for cls, code, detail in _TRANSPORT_ERRORS:
        if isinstance(exc, cls):
            return TransportFailure(
                code, detail.format(where=where) + (f": {_text(exc)}" if _text(exc) else "")
            )
    name = type(exc).__name__
    return TransportFailure(name, f"{name} talking to {where}" + (f": {_text(exc)}" if _text(exc) else ""))


def classify_transport_error(exc: BaseException) -> str:
    """A bounded error class for a transport exception (TLS, DNS, reset, broken pipe included)."""
    return transport_failure(exc).error_class


class _Trace:
    """Collects httpcore trace events into connect / TLS / time-to-first-byte phases.

    When the connection comes from :class:`~probes.support.netbackend.AsyncioBackend`, its
    :class:`~probes.support.netbackend.WireTiming` (bytes stamped as they arrive) is used instead
    of the trace events' own stamps (taken when a coroutine resumes, after any wait for a busy
    event loop). Other transports (httpcore's anyio backend, ``MockTransport``) use the events.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.start = clock()
        self.marks: dict[str, float] = {}
        #: One per connection made for the request (several when redirects are followed).
        self.wires: list[WireTiming] = []

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        # Event names: "connection.connect_tcp.started", "http11.receive_response_headers.complete", ...
        self.marks.setdefault(event, self._clock())
        if event == "connection.connect_tcp.complete":
            stream = info.get("return_value")
            wire = stream.get_extra_info(WIRE_TIMING) if stream is not None else None
            if isinstance(wire, WireTiming):
                self.wires.append(wire)

    def _span(self, prefix: str) -> float | None:
        a, b = self.marks.get(prefix + ".started"), self.marks.get(prefix + ".complete")
        return b - a if a is not None and b is not None else None

    def exchange_s(self) -> float | None:
        """From the first transport event (connect, or request headers on a reused connection) to
        the last body byte read, when both were seen; else None. With wire timing: connect, TLS
        handshake and request-to-last-byte added up (:meth:`WireTiming.on_wire_s`, per connection).

        Why: these marks are taken inside httpcore as each phase happens (or, with wire timing, as
        the bytes arrive), so time the request spent waiting for a busy event loop before its first
        byte went out (building it, acquiring the pool, other probes' callbacks) is not billed to
        the platform, as blackbox_exporter's figure is not either.
        """
        done = self.marks.get("http11.receive_response_body.complete") or self.marks.get(
            "http2.receive_response_body.complete"
        )
        if done is None or not self.marks:
            return None
        if self.wires:
            spans = [wire.on_wire_s(wire.last_byte) for wire in self.wires]
            if all(span is not None for span in spans):
                return sum(span for span in spans if span is not None)
        return done - min(self.marks.values())

    def timing(self, total: float) -> HttpTiming:
        if self.wires:
            wire = self.wires[0]
            return HttpTiming(
                connect_s=_since(wire.connect_started, wire.connected),
                tls_s=_since(wire.tls_started, wire.tls_done),
                ttfb_s=wire.on_wire_s(wire.first_byte),
                total_s=total,
            )
        # Measured from the first transport event, as the total is (see exchange_s).
        origin = min(self.marks.values(), default=self.start)
        ttfb = None
        for proto in ("http11", "http2"):
            done = self.marks.get(f"{proto}.receive_response_headers.complete")
            if done is not None:
                ttfb = done - origin
        return HttpTiming(
            connect_s=self._span("connection.connect_tcp"),
            tls_s=self._span("connection.start_tls"),
            ttfb_s=ttfb,
            total_s=total,
        )


def _since(start: float | None, end: float | None) -> float | None:
    return end - start if start is not None and end is not None else None


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
    target = httpx.URL(url)  # parsed once: the request is built from it, the step records its path
    path = target.path
    expected_set = set(expected)
    timeout = timeout_s if timeout_s is not None else max(0.1, ctx.remaining() - 0.5)
    start = clock()
    request = ctx.http.build_request(
        method,
        target,
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
    except (httpx.HTTPError, OSError) as exc:
        # OSError: a transport that lets the socket's own error through unmapped is still a
        # transport failure, not a crash of the probe.
        elapsed = clock() - start
        failure = transport_failure(exc, request.url)
        step = StepResult(
            name=name,
            status=Status.ERROR if failure.local else Status.FAIL,
            duration_s=elapsed,
            error_class=failure.error_class,
            message=f"{method} {path}: {failure.detail} after {elapsed:.2f}s",
            path=path,
            timing=trace.timing(elapsed),
        )
        return Exchange(step, None, b"")

    exchange_s = trace.exchange_s()  # 0.0 is a measurement (a frozen test clock), not a missing one
    elapsed = exchange_s if exchange_s is not None else clock() - start
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
