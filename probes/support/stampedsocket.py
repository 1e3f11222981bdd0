"""TCP connections the kernel times: when each read's bytes arrived, how long the handshake took.

Why: the probes run on one event loop, and a response that waited in the socket buffer while the
loop ran other probes must not be billed to the platform. On Linux a :class:`StampedSocket` asks
for ``SO_TIMESTAMPNS`` and reads with ``recvmsg``, so each read carries the moment the kernel
received its bytes; ``TCP_INFO`` gives the kernel's own round trip of the handshake. asyncio's
transports take such a socket as it is (``create_connection(sock=...)``), which is why
:func:`connect` makes the socket itself, racing a name's addresses as asyncio would.
Used by :mod:`probes.support.netbackend`; elsewhere than Linux it keeps asyncio's own connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import itertools
import os
import socket
import struct
import sys
import time
import typing
from asyncio.staggered import staggered_race
from collections.abc import Callable, Iterable

#: Delay before trying a host's next address in parallel, as anyio's ``connect_tcp`` does.
HAPPY_EYEBALLS_DELAY_S = 0.25

#: Kernel stamps: Linux on the architectures whose ``SO_TIMESTAMPNS`` is the generic 35 with a
#: 64-bit ``struct timespec`` (Python names neither the option nor its control message).
KERNEL_STAMPS = sys.platform == "linux" and os.uname().machine in {"x86_64", "aarch64", "riscv64"}
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("qq")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0
#: ``struct tcp_info``: ``tcpi_rtt`` (microseconds) and ``tcpi_total_retrans``, at their fixed
#: offsets since Linux 2.6; the 104 bytes up to the latter are all that is read.
_TCP_INFO = struct.Struct("68xI28xI")


#: A socket asking for receive stamps for the life of the process (see :func:`keep_stamping`).
_KEEPER: list[socket.socket] = []


def keep_stamping() -> None:
    """Keep the kernel stamping received packets while the process lives.

    Linux stamps packets only while some socket asks for it, and switches that on and off by
    patching its own code (a static key) as the first such socket opens and the last one closes,
    the switch on done later by a kernel worker. Probes a minute apart would flip it for every
    connection, and the packets of a connection opened while it is still off carry no stamp (their
    reads fall back to the event loop's time). One idle datagram socket keeps it on.
    """
    if not _KEEPER:
        keeper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            keeper.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        except OSError:
            keeper.close()
            raise
        _KEEPER.append(keeper)


class StampedSocket(socket.socket):
    """A TCP socket whose reads note when the kernel received the bytes (``SO_TIMESTAMPNS``).

    asyncio's transports read with ``recv`` (``recv_into`` under TLS) and hand the bytes to the
    protocol in the same callback, so :attr:`arrival` is fresh when the protocol looks. The stamp
    is on the wall clock; it is moved onto the backend's clock at once, by the time the bytes
    waited (``time.time()`` minus the stamp), so only that difference crosses clocks.
    """

    __slots__ = ("_clock", "arrival")

    def __init__(self, family: int, clock: Callable[[], float]) -> None:
        super().__init__(family, socket.SOCK_STREAM)
        self._clock = clock
        self.arrival = 0.0
        with contextlib.suppress(OSError):  # no stamps on this kernel: arrival is the read's own time
            keep_stamping()
            self.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data, ancdata, _, _ = self.recvmsg(bufsize, _CMSG_SPACE, flags)
        self._note(ancdata)
        return data

    def recv_into(self, buffer: typing.Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        count, ancdata, _, _ = self.recvmsg_into((view[:nbytes] if nbytes else view,), _CMSG_SPACE, flags)
        self._note(ancdata)
        return count

    def _note(self, ancdata: list[tuple[int, int, bytes]]) -> None:
        now = self._clock()
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                sec, nsec = _TIMESPEC.unpack_from(data)
                waited = time.time() - (sec + nsec * 1e-9)
                self.arrival = now - waited if waited > 0 else now
                return
        self.arrival = now

    def handshake_rtt_s(self) -> float | None:
        """The kernel's round-trip time of the TCP handshake, None when it is no connect time.

        A retransmitted SYN is left out of the kernel's RTT (Karn's rule), so then the
        retransmission wait, the platform's, would be missed: None, and the caller keeps its own.
        """
        try:
            rtt_us, retransmits = _TCP_INFO.unpack_from(
                self.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size)
            )
        except (OSError, struct.error):
            return None
        return rtt_us / 1e6 if rtt_us and not retransmits else None


async def connect(
    host: str,
    port: int,
    *,
    clock: Callable[[], float],
    local_address: str | None = None,
    options: Iterable[tuple[typing.Any, ...]] = (),
) -> tuple[StampedSocket, float]:
    """A connected :class:`StampedSocket`, as ``loop.create_connection`` would connect one.

    A name's addresses are tried families interleaved, the next one after
    :data:`HAPPY_EYEBALLS_DELAY_S` or at once when one fails (RFC 8305, as asyncio does);
    when all fail, the first failure is raised, so its errno survives. Returned with the socket:
    when it connected on ``clock``, the winning attempt's start plus the kernel's handshake RTT
    when the kernel has one, else the moment the event loop saw it connected.
    """
    loop = asyncio.get_running_loop()
    addresses: list[tuple[int, tuple[typing.Any, ...]]]
    if is_ip(host):
        addresses = [(socket.AF_INET6 if ":" in host else socket.AF_INET, (host, port))]
    else:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not found:
            raise OSError(f"no address found for {host}")
        addresses = interleaved([(family, address) for family, _, _, _, address in found])
    failures: list[OSError] = []

    async def attempt(family: int, address: tuple[typing.Any, ...]) -> tuple[StampedSocket, float]:
        sock = StampedSocket(family, clock)
        try:
            sock.setblocking(False)
            for option in options:
                sock.setsockopt(*option)
            if local_address:
                sock.bind((local_address, 0))
            started = clock()
            await loop.sock_connect(sock, address)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, OSError):
                failures.append(exc)
            raise
        return sock, started

    if len(addresses) == 1:
        winner: tuple[StampedSocket, float] | None = await attempt(*addresses[0])
    else:
        winner, _, _ = await staggered_race(
            (functools.partial(attempt, family, address) for family, address in addresses),
            HAPPY_EYEBALLS_DELAY_S,
        )
    if winner is None:
        raise failures[0] if failures else OSError(f"could not connect to {host}")
    sock, started = winner
    now = clock()
    rtt = sock.handshake_rtt_s()
    return sock, (min(now, started + rtt) if rtt is not None else now)


def interleaved(
    addresses: Iterable[tuple[int, tuple[typing.Any, ...]]],
) -> list[tuple[int, tuple[typing.Any, ...]]]:
    """``(family, address)`` pairs reordered to alternate families, each family in its own order.

    RFC 8305: a broken IPv6 path costs one happy-eyeballs delay, not one per IPv6 address.
    """
    by_family: dict[int, list[tuple[int, tuple[typing.Any, ...]]]] = {}
    for pair in addresses:
        by_family.setdefault(pair[0], []).append(pair)
    return [pair for row in itertools.zip_longest(*by_family.values()) for pair in row if pair is not None]


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
