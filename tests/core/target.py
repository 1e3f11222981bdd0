"""A real HTTP target on loopback for the core tests, whose behaviour a test switches at will."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def do_GET(self) -> None:
        """Answer according to the server's current mode."""
        target = self.server.target
        target.record(self.path, dict(self.headers.items()))
        mode = target.mode
        if mode == "slow":
            time.sleep(target.delay_s)
        if mode == "hang":
            # Hold the connection until the test ends (the client must give up on its own).
            target.release.wait(60)
            return
        status, body = (500, {"status": "error"}) if mode == "error" else (200, {"status": "healthy"})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    target: Target

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout tests) is expected; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Target:
    """``mode`` is "ok" (200 JSON), "error" (500), "slow" (200 after ``delay_s``) or "hang"."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay_s = 0.5
        self.release = threading.Event()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.target = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def record(self, path: str, headers: dict[str, str]) -> None:
        """Remember a request (path and headers) for assertions."""
        with self._lock:
            self.requests.append((path, headers))

    def count(self) -> int:
        """Requests received so far."""
        with self._lock:
            return len(self.requests)

    def start(self) -> Target:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging requests and stop serving."""
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
