"""The daemon's HTTP face: ``/metrics``, ``/healthz``, ``/readyz`` and routes added by others.

Starlette on uvicorn, inside the daemon's own event loop (no thread): the daemon owns signals, so
uvicorn's signal capture is switched off and it is stopped by :meth:`HttpServer.stop`.

- ``/metrics``  prometheus_client's ASGI app on the registry passed in;
- ``/healthz``  200 while the scheduler is alive (its heartbeat is recent), else 503: restart me;
- ``/readyz``   200 once start-up is done and until draining begins, else 503: do not route to me.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator, Sequence
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

#: ``() -> (ok, details)``; details become the JSON body.
Check = Callable[[], tuple[bool, dict[str, Any]]]


def build_app(
    *,
    registry: CollectorRegistry,
    health: Check,
    ready: Check,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The ASGI app. ``extra_routes`` come first so they may add paths, never shadow the built-ins."""

    async def healthz(_request: Request) -> JSONResponse:
        ok, details = health()
        return JSONResponse(
            {"status": "ok" if ok else "unhealthy", **details}, status_code=200 if ok else 503
        )

    async def readyz(_request: Request) -> JSONResponse:
        ok, details = ready()
        return JSONResponse(
            {"status": "ready" if ok else "not ready", **details}, status_code=200 if ok else 503
        )

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", _AsgiEndpoint(make_asgi_app(registry=registry)), methods=["GET"]),
        *extra_routes,
    ]
    return Starlette(routes=routes)


class _AsgiEndpoint:
    """Wraps a plain-function ASGI app so Starlette's Route serves it as ASGI.

    (Route treats a bare function as a request -> response handler; a Mount would redirect
    ``/metrics`` to ``/metrics/``, which some scrapers do not follow.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the daemon."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn releases
        return None


class ListenError(OSError):
    """The listen address cannot be bound (in use, not local, no permission)."""


class HttpServer:
    """uvicorn on a socket bound at construction, so the port is known before serving (port 0 works)."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise ListenError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        self._sock.set_inheritable(True)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5
        )
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Serve in a task on the running loop."""
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="http-server")
        return self._task

    @property
    def started(self) -> bool:
        """True once uvicorn accepts connections."""
        return bool(self._server.started)

    async def stop(self) -> None:
        """Stop accepting, finish open requests, close the socket."""
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._sock.close()
