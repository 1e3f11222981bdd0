"""Transport failures: each has its own error class and a message naming host:port, never empty.

The main cases run against real loopback servers that misbehave at the socket level (reset after
the request, hang up mid-body, refuse, present an untrusted certificate); every other httpx and OS
error class goes through httpx.MockTransport, raised bare and as the cause under httpx's wrapper.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from monitor.diagnosis import diagnose
from probes.base import ProbeContext, Secrets, Status, StepResult, SystemClock
from probes.support.httpstep import http_step
from tests.reliability.tls import self_signed

#: One socket-level misbehaviour of a server: called with the accepted connection.
Behaviour = Callable[[socket.socket], None]


def _read_request(conn: socket.socket) -> None:
    """Read until the end of the request headers (bounded: 64 KiB or the socket's timeout)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk


def _reset(conn: socket.socket) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def reset_after_request(conn: socket.socket) -> None:
    _read_request(conn)
    _reset(conn)


def reset_mid_body(conn: socket.socket) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    _reset(conn)


def close_without_answer(conn: socket.socket) -> None:
    _read_request(conn)
    conn.close()


def close_mid_body(conn: socket.socket) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    conn.close()


def close_mid_headers(conn: socket.socket) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
    conn.close()


def shut_while_client_sends(conn: socket.socket) -> None:
    # Once the headers are in, the client is writing the body. FIN first puts the client's socket in
    # CLOSE_WAIT; the RST that follows (close with SO_LINGER 0) is reported there as EPIPE on the
    # client's write: a broken pipe, every time. Waiting for the client's data to draw the RST would
    # not be: with the receive window full, no new data arrives and the client hits its write timeout.
    _read_request(conn)
    conn.shutdown(socket.SHUT_WR)
    _reset(conn)


@contextlib.contextmanager
def misbehaving_server(behaviour: Behaviour) -> Iterator[int]:
    """A one-connection TCP server on 127.0.0.1:<free port> doing ``behaviour``; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    port = listener.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.settimeout(10)
        try:
            behaviour(conn)
            done.wait(10)  # keep the socket until the client has seen the outcome
        except OSError:
            pass
        finally:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        done.set()
        listener.close()
        thread.join(10)


def _ctx(
    transport: httpx.AsyncBaseTransport | None = None, *, verify: bool | ssl.SSLContext = True
) -> ProbeContext:
    clock = SystemClock()
    return ProbeContext(
        http=httpx.AsyncClient(transport=transport, verify=verify),
        clock=clock,
        secrets=Secrets({}),
        logger=structlog.get_logger("test"),
        run_id="transport",
        deadline=clock.monotonic() + 20,
    )


async def _step(
    url: str, *, method: str = "GET", content: bytes | None = None, timeout_s: float = 10
) -> StepResult:
    ctx = _ctx()
    async with ctx.http:
        return (await http_step(ctx, "request", method, url, content=content, timeout_s=timeout_s)).step


REAL_CASES: dict[str, tuple[Behaviour, str, str]] = {
    "reset_after_request": (reset_after_request, "connection_reset", "connection reset by 127.0.0.1:{port}"),
    "reset_mid_body": (reset_mid_body, "connection_reset", "connection reset by 127.0.0.1:{port}"),
    "close_without_answer": (
        close_without_answer,
        "connection_closed",
        "127.0.0.1:{port} closed the connection without answering",
    ),
    "close_mid_headers": (
        close_mid_headers,
        "connection_closed",
        "127.0.0.1:{port} closed the connection without answering",
    ),
    "close_mid_body": (
        close_mid_body,
        "connection_closed",
        "127.0.0.1:{port} closed the connection mid-response (received 10 bytes, expected 1000)",
    ),
}


@pytest.mark.parametrize("case", sorted(REAL_CASES), ids=sorted(REAL_CASES))
async def test_real_server_misbehaviour_has_its_own_class_and_names_host_port(case: str) -> None:
    """A reset or a hang-up mid-response is FAIL with its own class and a message naming host:port."""
    behaviour, error_class, detail = REAL_CASES[case]
    with misbehaving_server(behaviour) as port:
        step = await _step(f"http://127.0.0.1:{port}/api/health?api_key=not-logged")
    assert step.status is Status.FAIL
    assert step.error_class == error_class
    assert step.message.startswith(f"GET /api/health: {detail.format(port=port)} after ")
    assert "api_key" not in step.message


async def test_a_server_hanging_up_while_the_body_is_sent_is_a_broken_pipe() -> None:
    """The server closes while a large upload is still being written: FAIL broken_pipe naming host:port."""
    with misbehaving_server(shut_while_client_sends) as port:
        step = await _step(f"http://127.0.0.1:{port}/upload", method="PUT", content=b"y" * 4_000_000)
    assert step.status is Status.FAIL
    assert step.error_class == "broken_pipe"
    assert f"broken pipe: 127.0.0.1:{port} closed the connection" in step.message


async def test_refused_connection_names_host_port() -> None:
    """Nothing listening: FAIL connect_error, 'connection refused by host:port', diagnosed as refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        step = await _step(f"http://127.0.0.1:{port}/")
    assert step.error_class == "connect_error"
    assert f"connection refused by 127.0.0.1:{port}" in step.message
    diagnosis = diagnose(step)
    assert diagnosis is not None
    assert diagnosis.cause == "connection_refused"


async def test_untrusted_certificate_is_a_tls_error_naming_host_port(tmp_path: Path) -> None:
    """A real TLS server with a self-signed certificate: FAIL tls_error with the verifier's reason."""
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)

    def handshake(conn: socket.socket) -> None:
        with contextlib.suppress(ssl.SSLError, OSError):
            server_ctx.wrap_socket(conn, server_side=True).close()

    with misbehaving_server(handshake) as port:
        step = await _step(f"https://127.0.0.1:{port}/")
    assert step.error_class == "tls_error"
    assert f"TLS handshake with 127.0.0.1:{port} failed: CERTIFICATE_VERIFY_FAILED" in step.message
    diagnosis = diagnose(step)
    assert diagnosis is not None
    assert diagnosis.cause == "tls_error"


async def test_a_silent_server_is_a_read_timeout_naming_host_port() -> None:
    """A server that accepts and never answers: FAIL read_timeout, 'did not answer in time'."""
    with misbehaving_server(_read_request) as port:
        step = await _step(f"http://127.0.0.1:{port}/", timeout_s=0.3)
    assert step.error_class == "read_timeout"
    assert f"read timeout: 127.0.0.1:{port} did not answer in time" in step.message
    diagnosis = diagnose(step)
    assert diagnosis is not None
    assert diagnosis.cause == "timeout"


# --- every other class, through MockTransport ------------------------------------------------


def _subclasses(root: type[BaseException]) -> list[type[BaseException]]:
    out: list[type[BaseException]] = []
    stack = [root]
    while stack:
        cls = stack.pop()
        out.append(cls)
        stack.extend(cls.__subclasses__())
    return out


HTTPX_ERRORS = sorted(
    {c for c in _subclasses(httpx.HTTPError) if c.__module__.startswith("httpx")}, key=lambda c: c.__name__
)

#: OS errors as the socket layer raises them, with what each must become.
OS_ERRORS: dict[str, tuple[OSError, str]] = {
    "ConnectionResetError": (
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        "connection_reset",
    ),
    "ConnectionAbortedError": (
        ConnectionAbortedError(errno.ECONNABORTED, "Software caused abort"),
        "connection_reset",
    ),
    "BrokenPipeError": (BrokenPipeError(errno.EPIPE, "Broken pipe"), "broken_pipe"),
    "ConnectionRefusedError": (
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        "connect_error",
    ),
    "EHOSTUNREACH": (OSError(errno.EHOSTUNREACH, "No route to host"), "connect_error"),
    "ENETUNREACH": (OSError(errno.ENETUNREACH, "Network is unreachable"), "connect_error"),
    "TimeoutError": (TimeoutError(errno.ETIMEDOUT, "Connection timed out"), "connect_timeout"),
    "gaierror": (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns_error"),
    "gaierror_again": (
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        "dns_error",
    ),
    "SSLError": (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "tls_error"),
    "SSLCertVerificationError": (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls_error"),
    "EMFILE": (OSError(errno.EMFILE, "Too many open files"), "local_resource_error"),
    "ENOMEM": (OSError(errno.ENOMEM, "Cannot allocate memory"), "local_resource_error"),
    "bare_OSError": (OSError("something odd"), "OSError"),
}


def _raising(exc: BaseException) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.MockTransport(handler)


def _httpx_error(cls: type[BaseException], request: httpx.Request) -> BaseException:
    if issubclass(cls, httpx.HTTPStatusError):
        return cls("", request=request, response=httpx.Response(500, request=request))
    if issubclass(cls, httpx.RequestError):
        return cls("", request=request)
    return cls("")


def _assert_reported(step: StepResult) -> None:
    assert step.status in (Status.FAIL, Status.ERROR)
    assert step.error_class
    assert "127.0.0.1:9" in step.message, step.message
    assert step.message.strip() != f"GET /x:  after {step.duration_s:.2f}s"


@pytest.mark.parametrize("cls", HTTPX_ERRORS, ids=[c.__name__ for c in HTTPX_ERRORS])
async def test_every_httpx_error_with_an_empty_text_gets_a_message(cls: type[BaseException]) -> None:
    """Each httpx exception class, raised with no text at all, still makes a message naming host:port."""
    request = httpx.Request("GET", "http://127.0.0.1:9/x")
    ctx = _ctx(_raising(_httpx_error(cls, request)))
    async with ctx.http:
        step = (await http_step(ctx, "request", "GET", "http://127.0.0.1:9/x", timeout_s=5)).step
    _assert_reported(step)


@pytest.mark.parametrize("wrapper", [None, httpx.ReadError, httpx.ConnectError, httpx.WriteError])
@pytest.mark.parametrize("name", sorted(OS_ERRORS), ids=sorted(OS_ERRORS))
async def test_every_os_error_is_classified_bare_or_wrapped(
    name: str, wrapper: type[httpx.TransportError] | None
) -> None:
    """An OS error, bare or under httpx's empty-text wrapper, gets its class; local ones are ERROR."""
    os_error, error_class = OS_ERRORS[name]
    request = httpx.Request("GET", "http://127.0.0.1:9/x")
    exc: BaseException = os_error
    if wrapper is not None:
        exc = wrapper("", request=request)
        exc.__cause__ = os_error
    ctx = _ctx(_raising(exc))
    async with ctx.http:
        step = (await http_step(ctx, "request", "GET", "http://127.0.0.1:9/x", timeout_s=5)).step
    _assert_reported(step)
    expected = error_class
    if name == "bare_OSError" and wrapper is not None:
        expected = {httpx.ReadError: "read_error", httpx.ConnectError: "connect_error"}.get(
            wrapper, "write_error"
        )
    assert step.error_class == expected, step.message
    assert step.status is (Status.ERROR if error_class == "local_resource_error" else Status.FAIL)
