"""The asyncio network backend against real servers on 127.0.0.1: answers, TLS, every error class
the probes report, and latency stamped when the bytes arrive."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import socket
import ssl
import threading
import time
import typing
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpcore
import httpx
import pytest
import structlog
from httpcore._backends.base import SOCKET_OPTION

from probes.base import Clock, ProbeContext, Secrets, Status, StepResult, SystemClock
from probes.support import stampedsocket
from probes.support.httpstep import http_step
from probes.support.netbackend import WIRE_TIMING, AsyncioBackend, AsyncioTransport, WireTiming
from tests.reliability.test_reliability_transport import (
    REAL_CASES,
    Behaviour,
    _read_request,
    misbehaving_server,
    shut_while_client_sends,
)
from tests.reliability.tls import self_signed

NO_KEEPALIVE = httpx.Limits(max_connections=None, max_keepalive_connections=0)
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"


class FrozenClock:
    """A monotonic clock that only moves when the test moves it (``at``)."""

    def __init__(self) -> None:
        self.at = 100.0

    def monotonic(self) -> float:
        return self.at

    def now(self) -> datetime:
        return datetime(2026, 7, 1, tzinfo=UTC) + timedelta(seconds=self.at)


def _client(
    ssl_context: ssl.SSLContext | None = None, backend: AsyncioBackend | None = None
) -> httpx.AsyncClient:
    transport = AsyncioTransport(
        ssl_context=ssl_context or ssl.create_default_context(), limits=NO_KEEPALIVE, backend=backend
    )
    return httpx.AsyncClient(transport=transport)


def _ctx(http: httpx.AsyncClient, clock: Clock | None = None) -> ProbeContext:
    clock = clock or SystemClock()
    return ProbeContext(
        http=http,
        clock=clock,
        secrets=Secrets({}),
        logger=structlog.get_logger("test"),
        run_id="netbackend",
        deadline=clock.monotonic() + 20,
    )


async def _step(
    url: str,
    *,
    method: str = "GET",
    content: bytes | None = None,
    timeout_s: float = 10,
    ssl_context: ssl.SSLContext | None = None,
) -> StepResult:
    ctx = _ctx(_client(ssl_context))
    async with ctx.http:
        return (await http_step(ctx, "request", method, url, content=content, timeout_s=timeout_s)).step


def answer(response: bytes, delay_s: float = 0.0) -> Behaviour:
    """A server behaviour: read the request, wait ``delay_s``, send ``response`` and close."""

    def behave(conn: socket.socket) -> None:
        _read_request(conn)
        time.sleep(delay_s)  # the server's own latency, in its thread
        conn.sendall(response)
        conn.close()

    return behave


@contextlib.contextmanager
def tls_server(tmp_path: Path, behaviour: Behaviour) -> Iterator[tuple[int, ssl.SSLContext]]:
    """A TLS server with a fresh self-signed certificate; yields its port and a client context trusting it."""
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)

    def behave(conn: socket.socket) -> None:
        with contextlib.suppress(ssl.SSLError, OSError):
            behaviour(server_ctx.wrap_socket(conn, server_side=True))

    with misbehaving_server(behave) as port:
        yield port, ssl.create_default_context(cafile=str(cert))


async def test_plain_request_is_answered_with_phases_from_the_wire() -> None:
    """A plain HTTP answer passes; connect and first-byte phases come from the connection's own stamps."""
    with misbehaving_server(answer(OK)) as port:
        step = await _step(f"http://127.0.0.1:{port}/health")
    assert step.status is Status.PASS
    assert step.http_status == 200
    assert step.timing is not None
    assert step.timing.connect_s is not None
    assert step.timing.tls_s is None
    assert step.timing.ttfb_s is not None
    assert step.timing.connect_s <= step.timing.ttfb_s <= step.duration_s


async def test_tls_request_is_answered_and_reports_the_handshake(tmp_path: Path) -> None:
    """A TLS server with a trusted self-signed certificate: PASS, with a TLS phase."""
    with tls_server(tmp_path, answer(OK)) as (port, trusting):
        step = await _step(f"https://127.0.0.1:{port}/health", ssl_context=trusting)
    assert step.status is Status.PASS, step.message
    assert step.timing is not None
    assert step.timing.tls_s is not None
    assert step.timing.connect_s is not None
    assert step.timing.ttfb_s is not None
    assert step.timing.connect_s + step.timing.tls_s <= step.timing.ttfb_s


async def test_stream_exposes_addresses_socket_and_tls_object(tmp_path: Path) -> None:
    """get_extra_info answers what httpcore and its users ask: addresses, socket, ssl_object, readability."""
    backend = AsyncioBackend()
    with tls_server(tmp_path, answer(OK)) as (port, trusting):
        stream = await backend.connect_tcp("127.0.0.1", port, timeout=5)
        assert stream.get_extra_info("ssl_object") is None
        stream = await stream.start_tls(trusting, server_hostname="127.0.0.1", timeout=5)
        try:
            assert isinstance(stream.get_extra_info("ssl_object"), ssl.SSLObject)
            assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
            assert stream.get_extra_info("client_addr")[0] == "127.0.0.1"
            assert stream.get_extra_info("socket").fileno() >= 0
            await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
            received = b""
            while chunk := await stream.read(65536, timeout=5):  # to the end: the server closes
                received += chunk
            assert received == OK
            assert stream.get_extra_info("is_readable") is True  # the end of the stream is readable
            wire = stream.get_extra_info(WIRE_TIMING)
            assert isinstance(wire, WireTiming)
            assert wire.connected is not None
            assert wire.tls_done is not None
            assert wire.first_byte is not None
            assert wire.connect_started <= wire.connected <= wire.tls_done <= wire.first_byte
        finally:
            await stream.aclose()


async def test_connect_binds_the_local_address_and_applies_socket_options() -> None:
    """connect_tcp honours local_address and socket_options, as httpcore passes them."""
    with misbehaving_server(answer(OK)) as port:
        stream = await AsyncioBackend().connect_tcp(
            "127.0.0.1",
            port,
            timeout=5,
            local_address="127.0.0.1",
            socket_options=[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)],
        )
        try:
            assert stream.get_extra_info("client_addr")[0] == "127.0.0.1"
            assert stream.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        finally:
            await stream.aclose()


@pytest.mark.parametrize("case", sorted(REAL_CASES), ids=sorted(REAL_CASES))
async def test_real_server_misbehaviour_keeps_its_error_class(case: str) -> None:
    """Resets and early hang-ups get the same class and message as with httpx's own transport."""
    behaviour, error_class, detail = REAL_CASES[case]
    with misbehaving_server(behaviour) as port:
        step = await _step(f"http://127.0.0.1:{port}/api/health")
    assert step.status is Status.FAIL
    assert step.error_class == error_class
    assert step.message.startswith(f"GET /api/health: {detail.format(port=port)} after ")


async def test_server_hanging_up_during_upload_is_a_broken_pipe() -> None:
    """The server closes while a large body is still being written: FAIL broken_pipe."""
    with misbehaving_server(shut_while_client_sends) as port:
        step = await _step(f"http://127.0.0.1:{port}/upload", method="PUT", content=b"y" * 4_000_000)
    assert step.error_class == "broken_pipe"


async def test_refused_connection_is_a_connect_error() -> None:
    """Nothing listening: FAIL connect_error, 'connection refused by host:port'."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]  # bound, never listening: connections are refused
        step = await _step(f"http://127.0.0.1:{port}/")
    assert step.error_class == "connect_error"
    assert f"connection refused by 127.0.0.1:{port}" in step.message


async def test_silent_server_is_a_read_timeout() -> None:
    """A server that reads the request and never answers: FAIL read_timeout."""
    with misbehaving_server(_read_request) as port:
        step = await _step(f"http://127.0.0.1:{port}/", timeout_s=0.3)
    assert step.error_class == "read_timeout"
    assert f"read timeout: 127.0.0.1:{port} did not answer in time" in step.message


async def test_silent_tls_server_is_a_connect_timeout() -> None:
    """A server that accepts and never speaks TLS: the handshake times out as a connect timeout."""
    with misbehaving_server(lambda conn: threading.Event().wait(5)) as port:
        step = await _step(f"https://127.0.0.1:{port}/", timeout_s=0.3)
    assert step.error_class == "connect_timeout"


async def test_untrusted_certificate_is_a_tls_error(tmp_path: Path) -> None:
    """A self-signed certificate the client does not trust: FAIL tls_error with the verifier's reason."""
    with tls_server(tmp_path, answer(OK)) as (port, _trusting):
        step = await _step(f"https://127.0.0.1:{port}/")
    assert step.error_class == "tls_error"
    assert f"TLS handshake with 127.0.0.1:{port} failed: CERTIFICATE_VERIFY_FAILED" in step.message


async def test_server_hanging_up_during_the_handshake_is_a_reset() -> None:
    """A server that closes before any TLS is spoken: connection_reset, as over httpx's own transport."""
    with misbehaving_server(lambda conn: conn.close()) as port:
        step = await _step(f"https://127.0.0.1:{port}/")
    assert step.status is Status.FAIL
    assert step.error_class == "connection_reset"
    assert f"connection reset by 127.0.0.1:{port}" in step.message


async def test_tls_server_closing_mid_body_is_connection_closed(tmp_path: Path) -> None:
    """Over TLS, an answer cut short (no close_notify) is connection_closed, as over plain TCP."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10
    with tls_server(tmp_path, answer(head)) as (port, trusting):
        step = await _step(f"https://127.0.0.1:{port}/", ssl_context=trusting)
    assert step.error_class == "connection_closed"


async def test_a_reset_keeps_the_os_error_under_httpx_read_error() -> None:
    """httpx.ReadError carries the ConnectionResetError (errno) under it, where classification looks."""
    with misbehaving_server(REAL_CASES["reset_after_request"][0]) as port:
        async with _client() as client:
            with pytest.raises(httpx.ReadError) as raised:
                await client.get(f"http://127.0.0.1:{port}/")
    under: list[BaseException] = []
    cur: BaseException | None = raised.value
    while cur is not None and len(under) < 8:
        under.append(cur)
        cur = cur.__cause__ or cur.__context__
    assert any(isinstance(e, ConnectionResetError) and e.errno == errno.ECONNRESET for e in under)


async def test_read_timeout_is_httpx_read_timeout() -> None:
    """The raw exception class through the transport is httpx's own, with httpcore's under it."""
    with misbehaving_server(_read_request) as port:
        async with _client() as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"http://127.0.0.1:{port}/", timeout=0.2)


async def test_latency_includes_the_servers_delay() -> None:
    """A server that waits before answering: the step's latency and first byte include that wait."""
    with misbehaving_server(answer(OK, delay_s=0.3)) as port:
        step = await _step(f"http://127.0.0.1:{port}/slow")
    assert step.status is Status.PASS
    assert step.duration_s >= 0.3
    assert step.timing is not None
    assert step.timing.ttfb_s is not None
    assert step.timing.ttfb_s >= 0.3


class _BusyAfterAnswer(httpx.AsyncBaseTransport):
    """Moves the frozen clock after the answer arrived: an event loop busy before the probe resumes."""

    def __init__(self, inner: httpx.AsyncBaseTransport, clock: FrozenClock) -> None:
        self._inner = inner
        self._clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        self._clock.at += 5.0
        return response


async def test_time_after_the_bytes_arrived_is_not_billed_to_the_platform() -> None:
    """Latency ends when the last byte arrived, not when the busy probe got round to reading it."""
    clock = FrozenClock()
    inner = AsyncioTransport(
        ssl_context=ssl.create_default_context(),
        limits=NO_KEEPALIVE,
        backend=AsyncioBackend(clock=clock.monotonic),
    )
    ctx = _ctx(httpx.AsyncClient(transport=_BusyAfterAnswer(inner, clock)), clock)
    with misbehaving_server(answer(OK)) as port:
        async with ctx.http:
            step = (await http_step(ctx, "request", "GET", f"http://127.0.0.1:{port}/")).step
    assert step.status is Status.PASS
    assert clock.at == 105.0  # the busy time did pass
    assert step.duration_s == 0.0


class _OnConnect(AsyncioBackend):
    """The backend, handing every new stream to :meth:`connected` before httpcore uses it."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's backend interface names it
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await super().connect_tcp(host, port, timeout, local_address, socket_options)
        return self.connected(stream)

    def connected(self, stream: httpcore.AsyncNetworkStream) -> httpcore.AsyncNetworkStream:
        return stream


class _BusyAfterConnect(_OnConnect):
    """Moves the frozen clock once connected: an event loop busy before it sends the request."""

    def __init__(self, clock: FrozenClock) -> None:
        super().__init__(clock=clock.monotonic)
        self._frozen = clock

    def connected(self, stream: httpcore.AsyncNetworkStream) -> httpcore.AsyncNetworkStream:
        self._frozen.at += 5.0
        return stream


async def test_time_before_the_request_went_out_is_not_billed_to_the_platform() -> None:
    """Latency counts connect and request-to-answer, not the monitor's pause between them."""
    clock = FrozenClock()
    transport = AsyncioTransport(
        ssl_context=ssl.create_default_context(), limits=NO_KEEPALIVE, backend=_BusyAfterConnect(clock)
    )
    ctx = _ctx(httpx.AsyncClient(transport=transport), clock)
    with misbehaving_server(answer(OK)) as port:
        async with ctx.http:
            step = (await http_step(ctx, "request", "GET", f"http://127.0.0.1:{port}/")).step
    assert step.status is Status.PASS
    assert clock.at == 105.0  # the pause did pass
    assert step.duration_s == 0.0
    assert step.timing is not None
    assert step.timing.ttfb_s == 0.0


# --- Kernel stamps: the time bytes waited for a busy event loop is the monitor's, not the platform's.

#: How long the tests below keep the event loop busy while the answer arrives.
BUSY_S = 1.0

kernel_stamps = pytest.mark.skipif(not stampedsocket.KERNEL_STAMPS, reason="kernel stamps are Linux-only")


class _BusyAfterRequest(_OnConnect):
    """Blocks the event loop (a probe's CPU-bound work) right after the request went out."""

    def connected(self, stream: httpcore.AsyncNetworkStream) -> httpcore.AsyncNetworkStream:
        write = stream.write

        async def write_then_block(buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
            await write(buffer, timeout)
            time.sleep(BUSY_S)  # noqa: ASYNC251  # blocking on purpose: the loop cannot read meanwhile

        stream.write = write_then_block  # type: ignore[method-assign]
        return stream


@kernel_stamps
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_an_answer_waiting_for_a_busy_loop_is_stamped_when_it_arrived(
    scheme: str, tmp_path: Path
) -> None:
    """The server answers at once while the loop is blocked for BUSY_S: the latency is the
    server's (well under BUSY_S), although the probe could only read the answer after BUSY_S."""
    server = tls_server(tmp_path, answer(OK)) if scheme == "https" else _plain(answer(OK))
    with server as (port, trusting):
        transport = AsyncioTransport(ssl_context=trusting, limits=NO_KEEPALIVE, backend=_BusyAfterRequest())
        ctx = _ctx(httpx.AsyncClient(transport=transport))
        started = time.monotonic()
        async with ctx.http:
            step = (await http_step(ctx, "request", "GET", f"{scheme}://127.0.0.1:{port}/")).step
        took = time.monotonic() - started
    assert step.status is Status.PASS, step.message
    assert took >= BUSY_S  # the loop was busy, the probe read late
    assert step.duration_s < BUSY_S / 2
    assert step.timing is not None
    assert step.timing.ttfb_s is not None
    assert step.timing.ttfb_s < BUSY_S / 2


@contextlib.contextmanager
def _plain(behaviour: Behaviour) -> Iterator[tuple[int, ssl.SSLContext]]:
    with misbehaving_server(behaviour) as port:
        yield port, ssl.create_default_context()


@kernel_stamps
def test_connect_time_is_the_kernels_handshake_round_trip() -> None:
    """The kernel's RTT of the handshake lies within the connect call that made it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        sock = stampedsocket.StampedSocket(socket.AF_INET, time.monotonic)
        with sock:
            started = time.perf_counter()
            sock.connect(listener.getsockname())
            took = time.perf_counter() - started
            rtt = sock.handshake_rtt_s()
    assert rtt is not None
    assert 0 < rtt <= took


@kernel_stamps
async def test_connect_phase_lies_within_the_connect_call() -> None:
    """connected - connect_started is positive and no longer than connect_tcp itself took."""
    with misbehaving_server(answer(OK)) as port:
        started = time.monotonic()
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        took = time.monotonic() - started
        try:
            wire = stream.get_extra_info(WIRE_TIMING)
            assert isinstance(wire, WireTiming)
            assert wire.connected is not None
            assert 0 < wire.connected - wire.connect_started <= took
        finally:
            await stream.aclose()


def _resolving_to(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    """Makes the running loop resolve every name to ``addresses`` (IPv4), in that order."""
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: int, **_: object) -> list[tuple[typing.Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


@kernel_stamps
async def test_a_name_falls_back_to_its_next_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name whose first address refuses: the next address answers, and the request passes."""
    with misbehaving_server(answer(OK)) as port:  # listens on 127.0.0.1 only
        _resolving_to(monkeypatch, "127.0.0.2", "127.0.0.1")
        step = await _step(f"http://platform.test:{port}/")
    assert step.status is Status.PASS, step.message


@kernel_stamps
async def test_a_name_whose_addresses_all_refuse_keeps_the_first_os_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All addresses refuse: ConnectError with the first ConnectionRefusedError (errno) under it."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        _resolving_to(monkeypatch, "127.0.0.2", "127.0.0.3")
        with pytest.raises(httpcore.ConnectError) as raised:
            await AsyncioBackend().connect_tcp("platform.test", port, timeout=5)
    cause = raised.value.__cause__
    assert isinstance(cause, ConnectionRefusedError)
    assert cause.errno == errno.ECONNREFUSED


def test_addresses_alternate_families_in_their_own_order() -> None:
    """RFC 8305 interleaving: v6, v4, v6, v4, then the longer family's rest."""
    v6a, v6b, v6c = ((socket.AF_INET6, (f"::{i}", 80)) for i in (1, 2, 3))
    v4a, v4b = ((socket.AF_INET, (f"127.0.0.{i}", 80)) for i in (1, 2))
    assert stampedsocket.interleaved([v6a, v6b, v6c, v4a, v4b]) == [v6a, v4a, v6b, v4b, v6c]
    assert stampedsocket.interleaved([v4a]) == [v4a]


async def test_without_kernel_stamps_requests_still_carry_wire_phases(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where the kernel cannot stamp (not Linux), asyncio connects and the loop's delivery stamps."""
    monkeypatch.setattr(stampedsocket, "KERNEL_STAMPS", False)
    with tls_server(tmp_path, answer(OK)) as (port, trusting):
        step = await _step(f"https://127.0.0.1:{port}/health", ssl_context=trusting)
        stream = await AsyncioBackend().connect_tcp(
            "127.0.0.1", port, timeout=5, socket_options=[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
        )
        try:
            assert stream.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        finally:
            await stream.aclose()
    assert step.status is Status.PASS, step.message
    assert step.timing is not None
    assert step.timing.connect_s is not None
    assert step.timing.tls_s is not None


# --- Pools: shared when connections are kept, one per request when none is.


@contextlib.contextmanager
def _http11_server() -> Iterator[tuple[int, list[int]]]:
    """A keep-alive HTTP/1.1 server on 127.0.0.1; yields its port and a list growing per connection."""
    import http.server

    connections: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            connections.append(1)
            super().setup()

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], connections
    finally:
        server.shutdown()
        server.server_close()


async def test_kept_connections_are_reused_through_the_shared_pool() -> None:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=5)
    with _http11_server() as (port, connections):
        transport = AsyncioTransport(ssl_context=ssl.create_default_context(), limits=limits)
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(3):
                assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
    assert len(connections) == 1


async def test_without_kept_connections_each_request_has_a_pool_of_its_own() -> None:
    """Many requests in flight at once all answered, one connection each, and no pool outlives them."""

    def pools() -> int:
        return sum(isinstance(o, httpcore.AsyncConnectionPool) for o in gc.get_objects())

    async def statuses(client: httpx.AsyncClient, port: int) -> list[int]:
        urls = [f"http://127.0.0.1:{port}/?n={i}" for i in range(60)]
        return [answer.status_code for answer in await asyncio.gather(*map(client.get, urls))]

    before = pools()
    with _http11_server() as (port, connections):
        async with _client() as client:
            assert await statuses(client, port) == [200] * 60
            for _ in range(10):  # the finished tasks' callbacks still hold them for a loop turn or two
                gc.collect()
                if pools() <= before:
                    break
                await asyncio.sleep(0)
            assert pools() <= before  # each request's pool went with its response
    assert len(connections) == 60


@kernel_stamps
def test_one_socket_keeps_the_kernel_stamping_for_the_process() -> None:
    """Every stamped socket leaves the same idle datagram socket open, asking for stamps."""
    with (
        stampedsocket.StampedSocket(socket.AF_INET, time.monotonic),
        stampedsocket.StampedSocket(socket.AF_INET, time.monotonic),
    ):
        pass
    (keeper,) = stampedsocket._KEEPER
    assert keeper.type == socket.SOCK_DGRAM
    assert keeper.fileno() >= 0
    assert keeper.getsockopt(socket.SOL_SOCKET, 35) == 1  # SO_TIMESTAMPNS
