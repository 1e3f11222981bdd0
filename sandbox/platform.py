"""The sandbox's platform process: auth listener, registry listener, admin listener, one asyncio loop.

Started by :class:`sandbox.Sandbox` as ``python -m sandbox.platform``, with its
:class:`~sandbox.settings.PlatformSettings` as JSON on stdin (it holds keys: never argv). It binds
its sockets itself -- falling back to a free port when a requested one is taken -- and then writes
``platform.json`` (ports and pid, no secrets) into the work directory: that file is the readiness
signal the parent waits for.

It also serves as the MLflow watchdog: it asks the kernel for SIGTERM when its parent dies, and on
SIGTERM/SIGINT it kills MLflow's process group before exiting, so even a parent killed with SIGKILL
leaves no MLflow behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.admin_app import build_admin_app
from sandbox.auth_app import build_auth_app
from sandbox.faults import FaultState
from sandbox.registry_app import Upstreams, build_registry_app
from sandbox.settings import PlatformSettings

#: The readiness file the platform writes once all its sockets are bound.
PORTS_FILE = "platform.json"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("sandbox.platform")


def bind_socket(host: str, port: int, *, fallback: bool, listen: bool = True) -> socket.socket:
    """A bound (and, unless ``listen`` is false, listening) TCP socket; a free port if ``port`` is taken."""
    # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY on accepted sockets only when the protocol
    # says TCP; with proto 0, Nagle plus delayed ACKs added ~40 ms to every answer.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        if not (fallback and exc.errno == errno.EADDRINUSE):
            sock.close()
            raise
        log.warning("port %d on %s is taken; using a free port instead", port, host)
        sock.bind((host, 0))
    if listen:
        sock.listen(128)
        sock.setblocking(False)
    return sock


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the platform (several servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class AccessLog:
    """ASGI middleware: one log line per request with method, path (never the query: it may hold
    ``api_key=``), status and duration. Replaces uvicorn's access log for that reason."""

    def __init__(self, app: ASGIApp, listener: str) -> None:
        self._app = app
        self._listener = listener

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_and_record)
        finally:
            log.info(
                "%s %s %s -> %d in %.3fs",
                self._listener,
                scope["method"],
                scope["path"],
                status,
                time.monotonic() - started,
            )


async def _blackhole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept a connection, read whatever comes, never answer (``mlflow-timeout``)."""
    try:
        while await reader.read(65536):
            pass
    finally:
        writer.close()


def _set_parent_death_signal() -> None:
    """Ask Linux to send us SIGTERM when our parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _kill_mlflow(pgid: int | None) -> None:
    if pgid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)


async def serve(settings: PlatformSettings, parent_pid: int) -> int:
    """Run the three listeners until SIGTERM/SIGINT; returns the exit code."""
    fallback = settings.fallback_to_free_port
    auth_sock = bind_socket(settings.host, settings.auth_port, fallback=fallback)
    registry_sock = bind_socket(settings.host, settings.registry_port, fallback=fallback)
    admin_sock = bind_socket("127.0.0.1", 0, fallback=False)
    # Bound but never listening: connecting to it is refused, and nobody else can take the port.
    refused_sock = bind_socket("127.0.0.1", 0, fallback=False, listen=False)
    blackhole_sock = bind_socket("127.0.0.1", 0, fallback=False)
    blackhole = await asyncio.start_server(_blackhole, sock=blackhole_sock)

    auth_port = auth_sock.getsockname()[1]
    registry_port = registry_sock.getsockname()[1]
    auth_url = f"http://{settings.host}:{auth_port}"
    upstreams = Upstreams(
        mlflow=settings.mlflow_url,
        refused=f"http://127.0.0.1:{refused_sock.getsockname()[1]}",
        blackhole=f"http://127.0.0.1:{blackhole_sock.getsockname()[1]}",
    )
    faults = FaultState(settings.faults)

    def status() -> dict[str, Any]:
        return {
            "platform_pid": os.getpid(),
            "components": {
                "auth": {"url": auth_url},
                "registry": {"url": f"http://{settings.host}:{registry_port}"},
                "mlflow": {"url": settings.mlflow_url, "prefix": settings.mlflow_prefix},
            },
        }

    # trust_env=False: a developer's HTTP(S)_PROXY must not capture loopback traffic.
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
        apps: list[tuple[str, ASGIApp, socket.socket]] = [
            ("auth", build_auth_app(settings, faults), auth_sock),
            ("registry", build_registry_app(settings, faults, client, auth_url, upstreams), registry_sock),
            ("admin", build_admin_app(settings.admin_token, faults, status), admin_sock),
        ]
        servers = [
            _QuietServer(
                uvicorn.Config(
                    AccessLog(app, name),
                    lifespan="off",
                    access_log=False,
                    log_config=None,
                    server_header=False,
                    timeout_graceful_shutdown=2,
                )
            )
            for name, app, _ in apps
        ]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if os.getppid() != parent_pid:
            # The parent died before the death signal was armed.
            stop.set()
        tasks = [
            asyncio.create_task(server.serve(sockets=[sock]))
            for server, (_, _, sock) in zip(servers, apps, strict=True)
        ]
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.02)
        ports = {
            "pid": os.getpid(),
            "auth_port": auth_port,
            "registry_port": registry_port,
            "admin_port": admin_sock.getsockname()[1],
        }
        ready_file = Path(settings.workdir) / PORTS_FILE
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(ports))
        tmp.replace(ready_file)
        log.info("platform ready: auth :%d, registry :%d", auth_port, registry_port)
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        log.info("platform stopping")
        _kill_mlflow(settings.mlflow_pgid)
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        waiter.cancel()
    blackhole.close()
    refused_sock.close()
    return 0


def main() -> int:
    """Entry point of ``python -m sandbox.platform``: settings JSON on stdin, parent pid as argv[1]."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _set_parent_death_signal()
    parent_pid = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    settings = PlatformSettings.from_json_dict(json.loads(sys.stdin.read()))
    return asyncio.run(serve(settings, parent_pid))


if __name__ == "__main__":
    sys.exit(main())
