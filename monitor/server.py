"""The daemon's HTTP face: ``/metrics``, ``/healthz``, ``/readyz`` and routes added by others.

Starlette on uvicorn, inside the daemon's own event loop (no thread): the daemon owns signals, so
uvicorn's signal capture is switched off and it is stopped by :meth:`HttpServer.stop`.

- ``/metrics``  the registry passed in, rendered between the probes' work (:mod:`monitor.exposition`);
- ``/healthz``  200 while the scheduler is alive (its heartbeat is recent), else 503: restart me;
- ``/readyz``   200 once start-up is done and until draining begins, else 503: do not route to me.

Protection follows Prometheus's exporter-toolkit (the config's ``web:`` section): TLS on the one
listener, and HTTP basic auth checked against bcrypt hashes for every path but ``/healthz``, which
ECS's health check reads without credentials (``/metrics`` only with ``protect_metrics``). bcrypt
is slow on purpose, so it runs off the event loop, two at a time at most, and a successful check is
remembered (a digest of user, password and hash) so a scraper or a refreshing status page costs one
bcrypt per credential, not one per request; wrong passwords are never remembered. An unknown user
is checked against a real hash too, so the answer takes as long as for a wrong password. HTML
answers carry a Content-Security-Policy without scripts or framing, ``nosniff`` and no referrer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import socket
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.exposition import ConstLabels, render
from monitor.webconfig import TlsServerConfig, WebConfig

#: ``() -> (ok, details)``; details become the JSON body.
Check = Callable[[], tuple[bool, dict[str, Any]]]

#: Paths that stay open whatever ``web:`` says: the container health check has no credentials.
OPEN_PATHS = frozenset({"/healthz"})
#: The status page has no script, no frame and no form; its styles are inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HTML_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
#: Successful credential checks remembered (digests only); cleared whole when full.
_AUTH_CACHE_SIZE = 256


def build_app(
    *,
    registry: CollectorRegistry,
    health: Check,
    ready: Check,
    extra_routes: Sequence[BaseRoute] = (),
    web: WebConfig | None = None,
    metric_labels: Mapping[str, str] | None = None,
) -> Starlette:
    """The ASGI app. ``extra_routes`` come first so they may add paths, never shadow the built-ins.

    ``metric_labels`` are added to every series on ``/metrics`` (the daemon's location).

    ``web`` adds basic auth (see the module docstring); security headers are always on.
    """

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
        Route("/metrics", _metrics_endpoint(_exposed(registry, metric_labels)), methods=["GET"]),
        *extra_routes,
    ]
    web = web or WebConfig()
    users = {name: hashed.get_secret_value() for name, hashed in web.basic_auth_users.items()}
    guard = Middleware(
        Guard, checker=BasicAuthChecker(users) if users else None, protect_metrics=web.protect_metrics
    )
    return Starlette(routes=routes, middleware=[guard])


class BasicAuthChecker:
    """Checks ``user:password`` against bcrypt hashes (exporter-toolkit's ``basic_auth_users``)."""

    def __init__(self, users: Mapping[str, str], *, concurrency: int = 2) -> None:
        if not users:
            raise ValueError("no users")
        # Imported only when basic auth is configured (here, so a broken install fails at start):
        # a daemon without it never keeps bcrypt.
        import bcrypt  # noqa: F401

        self._users = {name: hashed.encode() for name, hashed in users.items()}
        # An unknown user is checked against a real hash (same cost), then refused regardless.
        self._decoy = next(iter(self._users.values()))
        self._ok: set[bytes] = set()
        self._slots = asyncio.Semaphore(concurrency)

    @staticmethod
    def _digest(user: str, password: str, hashed: bytes) -> bytes:
        return hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()

    async def check(self, user: str, password: str) -> bool:
        """True when ``password`` is ``user``'s; bcrypt runs in a worker thread."""
        hashed = self._users.get(user)
        digest = self._digest(user, password, hashed or self._decoy)
        if hashed is not None and digest in self._ok:
            return True
        # bcrypt reads 72 bytes at most; the library refuses longer input rather than cutting it, and
        # htpasswd hashes only the first 72, so compare those (a long password must not be a 500).
        candidate = password.encode()[:72]
        import bcrypt  # loaded by __init__: a lookup in sys.modules

        async with self._slots:
            matches = await asyncio.to_thread(bcrypt.checkpw, candidate, hashed or self._decoy)
        if not (matches and hashed is not None):
            return False
        if len(self._ok) >= _AUTH_CACHE_SIZE:
            self._ok.clear()
        self._ok.add(digest)
        return True


def _credentials(headers: Headers) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic`` header, or None when absent or malformed."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _exposed(
    registry: CollectorRegistry, labels: Mapping[str, str] | None
) -> CollectorRegistry | ConstLabels:
    return ConstLabels(registry, labels) if labels else registry


def _metrics_endpoint(source: CollectorRegistry | ConstLabels) -> Callable[[Request], Any]:
    """``GET /metrics``: rendered in slices, so a scrape never stalls the probes' loop for long."""

    async def metrics(request: Request) -> Response:
        body, headers = await render(
            source,
            accept=request.headers.get("accept", ""),
            accept_encoding=request.headers.get("accept-encoding", ""),
            names=request.query_params.getlist("name[]"),
        )
        return Response(body, headers=headers)

    return metrics


class Guard:
    """ASGI middleware: basic auth before the app (when configured), security headers after it."""

    def __init__(self, app: ASGIApp, *, checker: BasicAuthChecker | None, protect_metrics: bool) -> None:
        self._app = app
        self._checker = checker
        self._protect_metrics = protect_metrics

    def _needs_auth(self, path: str) -> bool:
        if self._checker is None or path in OPEN_PATHS:
            return False
        return path != "/metrics" or self._protect_metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if self._checker is not None and self._needs_auth(scope["path"]):
            given = _credentials(Headers(scope=scope))
            if given is None or not await self._checker.check(*given):
                refusal = PlainTextResponse(
                    "unauthorized\n",
                    status_code=401,
                    headers={
                        "www-authenticate": 'Basic realm="synthmon", charset="UTF-8"',
                        "x-content-type-options": "nosniff",
                    },
                )
                await refusal(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-content-type-options"] = "nosniff"
                if headers.get("content-type", "").startswith("text/html"):
                    for name, value in HTML_HEADERS.items():
                        headers[name] = value
            await send(message)

        await self._app(scope, receive, send_with_headers)


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
    """uvicorn on a socket bound at construction, so the port is known before serving (port 0 works).

    With ``tls`` it serves HTTPS only; the certificate is read when serving starts.
    """

    def __init__(self, app: Starlette, host: str, port: int, *, tls: TlsServerConfig | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says
        # TCP, and without it a keep-alive client waits a delayed ACK (40 ms) for a mid-sized answer.
        self._sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise ListenError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        self._sock.set_inheritable(True)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self.tls = tls is not None
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            ssl_certfile=tls.cert_file if tls is not None else None,
            ssl_keyfile=tls.key_file if tls is not None else None,
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
