"""An asyncio-native network backend for httpcore, and an httpx transport built on it.

Why not httpcore's default (anyio) backend: every read and write there opens an anyio cancel
scope and asks anyio for the current task, close to a quarter of a request's CPU on loopback,
and a response byte is only stamped when the reading coroutine resumes, so a busy event loop is
billed to the platform. Here a plain :class:`asyncio.Protocol` buffers what arrives, timeouts
are one ``call_later`` each, and :class:`WireTiming` stamps the moment bytes arrive, which
:mod:`probes.support.httpstep` reads back for the step latency.

"The moment bytes arrive" is the kernel's, where it can say: on Linux each socket asks for
``SO_TIMESTAMPNS`` and reads with ``recvmsg``, so a response that waited in the socket buffer
while the event loop ran other probes is stamped when it reached the host, not when the loop got
to it; and the connect time is the kernel's own measure of the handshake (``TCP_INFO``'s RTT of
the SYN, unless the SYN was retransmitted). Elsewhere, or when the kernel gives no stamp, the
stamp is the event loop's delivery of the bytes (``data_received``), as it was before.

The exceptions are httpcore's, raised where its anyio backend raises them, with the OS or
``ssl`` error as ``__cause__`` and ``__context__`` (httpcore's pool re-raises ``from None``,
which keeps only the latter): httpx maps them to the same ``httpx`` classes, and
:func:`probes.support.httpstep.transport_failure` finds the same errno under them::

    connect_tcp   TimeoutError -> ConnectTimeout;  OSError (refused, DNS, unreachable) -> ConnectError
    start_tls     TimeoutError -> ConnectTimeout;  OSError, ssl.SSLError, peer closing (ECONNRESET)
                  -> ConnectError
    read          TimeoutError -> ReadTimeout;     connection lost with an error -> ReadError
                  (end of stream -> b"", as anyio's ``EndOfStream`` is)
    write         TimeoutError -> WriteTimeout;    connection lost or closed -> WriteError

Unix sockets are not implemented: the daemon's client factory never asks for them (no ``uds``).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
import ssl
import time
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpcore
import httpx
from httpcore._backends.base import SOCKET_OPTION
from httpcore._utils import is_socket_readable
from httpx._transports.default import AsyncResponseStream, map_httpcore_exceptions

from probes.support import stampedsocket
from probes.support.stampedsocket import is_ip

#: The key under which a stream hands out its :class:`WireTiming` (``get_extra_info``).
WIRE_TIMING = "wire_timing"


@dataclass(slots=True)
class WireTiming:
    """When each phase of one connection happened, on the backend's clock (seconds).

    ``first_byte`` and ``last_byte`` are arrival times (the kernel receiving the bytes, see the
    module docstring), not the times a coroutine got round to reading them; ``last_byte`` is the
    arrival of the newest bytes read so far, or of the end of the stream once a read returned it.
    ``connected`` is ``connect_started`` plus name resolution plus the kernel's handshake RTT when
    it has one; ``tls_done`` is the arrival of the last bytes read by the handshake (with TLS 1.3,
    a session ticket the server sent right after can be counted, one round trip, only when the
    event loop was too busy to finish the handshake before it came).
    """

    connect_started: float
    connected: float | None = None
    tls_started: float | None = None
    tls_done: float | None = None
    request_started: float | None = None
    first_byte: float | None = None
    last_byte: float | None = None

    def on_wire_s(self, until: float | None) -> float | None:
        """Connect + TLS handshake + request start to ``until`` (an arrival), when all happened.

        The pauses between those phases (the event loop busy with other probes before it resumed
        this one to start TLS or send the request) are the monitor's own time, not the
        platform's, and are left out.
        """
        if self.connected is None or self.request_started is None or until is None:
            return None
        tls = 0.0
        if self.tls_started is not None:
            if self.tls_done is None:
                return None
            tls = self.tls_done - self.tls_started
        return (self.connected - self.connect_started) + tls + (until - self.request_started)


class _Protocol(asyncio.Protocol):
    """Buffers received bytes, stamps their arrival, and wakes the one reader or writer waiting."""

    def __init__(
        self, timing: WireTiming, clock: Callable[[], float], sock: socket.socket | None = None
    ) -> None:
        self.timing = timing
        self._clock = clock
        #: Where the kernel's stamp of the bytes just read is, when the socket keeps one.
        self._stamped = sock if isinstance(sock, stampedsocket.StampedSocket) else None
        self.buffer = bytearray()
        self.last_arrival = 0.0
        self.eof_at: float | None = None
        self.error: BaseException | None = None
        self.lost = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.timing.connected is None:  # the backend stamps it when it made the socket itself
            self.timing.connected = self._clock()

    def arrival(self) -> float:
        """When the bytes just read reached the host: the kernel's stamp, else now.

        Never before the request went out or the previous arrival, so a stepped wall clock
        (the kernel stamps on it) cannot make a phase negative.
        """
        now = self._clock()
        if self._stamped is None:
            return now
        floor = self.timing.request_started or self.timing.connect_started
        return min(now, max(self._stamped.arrival, self.last_arrival, floor))

    def data_received(self, data: bytes) -> None:
        now = self.arrival()
        if self.timing.first_byte is None:
            self.timing.first_byte = now
        self.last_arrival = now
        self.buffer += data
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof_at = self.arrival()
        self._wake_reader()
        return False  # let the transport close itself: we never write after the peer is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        if self.eof_at is None:
            self.eof_at = self._clock()
        self._wake_reader()
        self._paused = False
        self._wake(self._drain_waiter)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake(self._drain_waiter)

    def _wake_reader(self) -> None:
        self._wake(self._read_waiter)

    @staticmethod
    def _wake(waiter: asyncio.Future[None] | None) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_readable(self, timeout: float | None) -> None:
        """Waits until bytes, the end of the stream or an error arrive; TimeoutError after ``timeout``."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._read_waiter = waiter
        try:
            await _wait(waiter, timeout)
        finally:
            self._read_waiter = None

    async def wait_drained(self, timeout: float | None) -> None:
        """Waits until the transport takes writes again (or the connection is gone).

        TimeoutError after ``timeout`` seconds.
        """
        if not self._paused:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiter = waiter
        try:
            await _wait(waiter, timeout)
        finally:
            self._drain_waiter = None


async def _wait(waiter: asyncio.Future[None], timeout: float | None) -> None:
    """``await waiter``, raising TimeoutError after ``timeout`` seconds: one timer, no task cancellation."""
    if timeout is None:
        await waiter
        return
    timer = asyncio.get_running_loop().call_later(max(timeout, 0.0), _expire, waiter)
    try:
        await waiter
    finally:
        timer.cancel()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (then maybe TLS) connection: reads from the protocol's buffer, writes to the transport."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol, clock: Callable[[], float]) -> None:
        self._transport = transport
        self._raw = transport  # the TCP transport, also under TLS: closing it closes everything
        self._protocol = protocol
        self._clock = clock

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        proto = self._protocol
        if not proto.buffer and proto.eof_at is None and not proto.lost:
            try:
                await proto.wait_readable(timeout)
            except TimeoutError as exc:
                raise httpcore.ReadTimeout("timed out") from exc
        if proto.buffer:
            data = bytes(proto.buffer[:max_bytes])
            del proto.buffer[:max_bytes]
            proto.timing.last_byte = proto.last_arrival
            return data
        if proto.error is not None:
            raise _mapped(httpcore.ReadError, proto.error) from proto.error
        proto.timing.last_byte = proto.eof_at
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        proto = self._protocol
        if proto.error is not None:
            raise _mapped(httpcore.WriteError, proto.error) from proto.error
        if proto.lost or self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        if proto.timing.request_started is None:
            proto.timing.request_started = self._clock()
        self._transport.write(buffer)
        try:
            await proto.wait_drained(timeout)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout("timed out") from exc
        if proto.error is not None:
            raise _mapped(httpcore.WriteError, proto.error) from proto.error

    async def aclose(self) -> None:
        # Closing the TCP transport, not the TLS one: no close_notify exchange to wait for (up to
        # 30 s in asyncio), as anyio's non-standard-compatible TLS streams do not wait either.
        self._raw.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        self._protocol.timing.tls_started = self._clock()
        try:
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            self._raw.close()
            raise httpcore.ConnectTimeout("timed out") from exc
        except OSError as exc:  # ssl.SSLError (a bad certificate) is an OSError too
            self._raw.close()
            if isinstance(exc, ConnectionResetError) and exc.errno is None:
                # asyncio reports a peer hanging up mid-handshake as a bare ConnectionResetError;
                # give it its errno so the step is classed as a reset, as it is over anyio.
                exc.errno, exc.strerror = errno.ECONNRESET, "peer closed during the TLS handshake"
            raise _mapped(httpcore.ConnectError, exc) from exc
        if tls is None:  # the transport was already closing
            self._raw.close()
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        # The handshake ended when its last bytes arrived, not when this coroutine resumed.
        self._protocol.timing.tls_done = self._protocol.arrival()
        self._transport = tls
        return self

    def get_extra_info(self, info: str) -> typing.Any:
        if info == WIRE_TIMING:
            return self._protocol.timing
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            proto = self._protocol
            if proto.buffer or proto.eof_at is not None or proto.lost:
                return True
            return is_socket_readable(self._transport.get_extra_info("socket"))
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio's own transports (see the module docstring).

    ``clock`` stamps :class:`WireTiming`; it must be the event loop's monotonic clock or one
    read on the same scale, since only differences between its readings are reported.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        timing = WireTiming(connect_started=self._clock())
        options = tuple(socket_options or ())
        try:
            async with asyncio.timeout(timeout):
                if not stampedsocket.KERNEL_STAMPS:
                    protocol = _Protocol(timing, self._clock)
                    transport, _ = await loop.create_connection(
                        lambda: protocol,
                        host,
                        port,
                        local_addr=(local_address, 0) if local_address else None,
                        # Racing addresses costs a task each; only a name can have several.
                        happy_eyeballs_delay=None if is_ip(host) else stampedsocket.HAPPY_EYEBALLS_DELAY_S,
                    )
                    for option in options:
                        transport.get_extra_info("socket").setsockopt(*option)
                else:
                    sock, timing.connected = await stampedsocket.connect(
                        host, port, clock=self._clock, local_address=local_address, options=options
                    )
                    protocol = _Protocol(timing, self._clock, sock)
                    try:
                        transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
                    except BaseException:
                        sock.close()
                        raise
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout("timed out") from exc
        except OSError as exc:  # refused, unreachable, socket.gaierror (DNS)
            raise _mapped(httpcore.ConnectError, exc) from exc
        return AsyncioStream(transport, protocol, self._clock)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _mapped(cls: type[Exception], cause: BaseException) -> Exception:
    """``cls`` wrapping ``cause``, with ``cause`` as its ``__context__`` too.

    httpcore's pool re-raises a failed request's exception ``from None``, which drops
    ``__cause__``; ``__context__`` survives, and is where the OS error (its errno) must be found.
    """
    exc = cls(str(cause))
    exc.__context__ = cause
    return exc


def _core_url(url: httpx.URL) -> httpcore.URL:
    return httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path)


class AsyncioTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncHTTPTransport`` over :class:`AsyncioBackend` (httpx's own takes no backend).

    It builds the pool httpx would for the same arguments (direct, HTTP(S) proxy or SOCKS proxy)
    and maps httpcore's exceptions with httpx's own ``map_httpcore_exceptions``, so callers see
    exactly the ``httpx`` exception classes they would see from ``AsyncHTTPTransport``.

    With no connection kept idle (``max_keepalive_connections=0``, the daemon's choice: every run
    measures its own connect), each request gets a pool of its own, dropped with its response.
    A pool shared by every request gains nothing then, and costs: httpcore walks all of a pool's
    connections and queued requests at every request and response, so with hundreds in flight
    (250 probes at 1 s) that walk was the largest part of the daemon's CPU.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        limits: httpx.Limits,
        proxy: httpx.Proxy | None = None,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        backend = backend or AsyncioBackend()
        pool_args: dict[str, typing.Any] = {
            "ssl_context": ssl_context,
            "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry,
            "network_backend": backend,
        }
        self._new_pool: Callable[[], httpcore.AsyncConnectionPool]
        if proxy is None:
            self._new_pool = functools.partial(httpcore.AsyncConnectionPool, **pool_args)
        elif proxy.url.scheme in ("http", "https"):
            self._new_pool = functools.partial(
                httpcore.AsyncHTTPProxy,
                proxy_url=_core_url(proxy.url),
                proxy_auth=proxy.raw_auth,
                proxy_headers=proxy.headers.raw,
                proxy_ssl_context=proxy.ssl_context,
                **pool_args,
            )
        elif proxy.url.scheme in ("socks5", "socks5h"):
            # httpcore raises the ImportError naming ``socksio`` when it is not installed.
            self._new_pool = functools.partial(
                httpcore.AsyncSOCKSProxy,
                proxy_url=_core_url(proxy.url),
                proxy_auth=proxy.raw_auth,
                **pool_args,
            )
        else:
            raise ValueError(f"proxy scheme must be http, https, socks5 or socks5h, not {proxy.url.scheme!r}")
        first = self._new_pool()  # a SOCKS proxy without socksio fails here, at construction, as in httpx
        #: The one pool every request shares, when connections are kept for reuse.
        self._pool = first if limits.max_keepalive_connections != 0 else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)  # as httpx's own transport asserts
        core_request = httpcore.Request(
            method=request.method,
            url=_core_url(request.url),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        pool = self._pool or self._new_pool()
        with map_httpcore_exceptions():
            response = await pool.handle_async_request(core_request)
        assert isinstance(response.stream, typing.AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=AsyncResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
