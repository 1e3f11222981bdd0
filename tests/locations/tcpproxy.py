"""A loopback TCP proxy that can start dropping its traffic: one location's network failing.

``TcpProxy(host, port)`` listens on ``127.0.0.1:<ephemeral>`` and forwards every connection to
``host:port`` (threads, one pair per connection). ``drop()`` resets every open connection and
every new one (accepted, then closed with an RST), as a zone whose network broke would look to
the daemon behind it; ``restore()`` forwards again. Used as a context manager.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with an RST (linger 0), not a polite FIN."""
    with contextlib.suppress(OSError):  # already closed by the other side
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class TcpProxy:
    """Forwards ``127.0.0.1:self.port`` to ``host:port`` until it is told to drop (see module doc)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        # accept() wakes every 0.1 s to see the stop flag: closing a socket under a blocked
        # accept() does not reliably stop it taking one more connection.
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._dropping = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.accepted = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcpproxy", daemon=True)
        self._thread.start()

    def url(self, scheme: str = "http") -> str:
        """The proxy's base URL."""
        return f"{scheme}://127.0.0.1:{self.port}"

    def drop(self) -> None:
        """Reset every open connection and every new one until :meth:`restore`."""
        self._dropping.set()
        with self._lock:
            victims = list(self._open)
            self._open.clear()
        for sock in victims:
            _reset(sock)

    def restore(self) -> None:
        """Forward new connections again."""
        self._dropping.clear()

    def close(self) -> None:
        """Stop accepting and reset everything still open."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self.drop()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self._dropping.is_set():
                self.dropped += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _reset(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # One side finished (or was reset): end both, so neither waits for ever.
            for sock in (src, dst):
                with self._lock:
                    self._open.discard(sock)
                with contextlib.suppress(OSError):  # not connected any more
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
