"""The sandbox's fault-control endpoint: loopback only, protected by a per-start bearer token.

- ``GET /faults`` -> ``{"active": [...], "known": {name: description}}``
- ``PUT /faults`` with ``{"faults": [...]}`` replaces the active set; ``POST /faults/<name>`` adds one;
  ``DELETE /faults`` clears all. Unknown names: 400, nothing changed.
- ``PUT /delays`` with ``{"artifacts_slow_s": 1.5, ...}`` sets slow faults' delays at runtime
  (cleared with the faults); unknown names or bad values: 400, nothing changed.
- ``GET /status`` -> the components, their URLs, pids and the active faults.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.faults import FAULTS, FaultState, UnknownFaultError


class _Guard:
    """ASGI middleware: loopback peers with the right token only; everyone else gets 403/401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        client = scope.get("client")
        try:
            loopback = client is not None and ipaddress.ip_address(client[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            await JSONResponse({"detail": "loopback only"}, status_code=403)(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        # Constant-time comparison: the token is the only thing between a local user and the faults.
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token, self._token):
            await JSONResponse({"detail": "admin token required"}, status_code=401)(scope, receive, send)
            return
        await self._app(scope, receive, send)


def build_admin_app(token: str, faults: FaultState, status: Callable[[], dict[str, Any]]) -> ASGIApp:
    """The admin app; ``status`` returns the component table for ``GET /status``."""

    def answer() -> JSONResponse:
        return JSONResponse({"active": list(faults.active), "known": FAULTS, "delays": faults.delays})

    async def get_faults(_: Request) -> Response:
        return answer()

    async def put_faults(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": "body must be JSON"}, status_code=400)
        names = body.get("faults") if isinstance(body, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return JSONResponse({"detail": 'body must be {"faults": [names]}'}, status_code=400)
        try:
            faults.set(names)
        except UnknownFaultError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        return answer()

    async def add_fault(request: Request) -> Response:
        try:
            faults.add(request.path_params["name"])
        except UnknownFaultError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        return answer()

    async def clear_faults(_: Request) -> Response:
        faults.clear()
        return answer()

    async def put_delays(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": "body must be JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"detail": 'body must be {"name_s": seconds, ...}'}, status_code=400)
        try:
            faults.set_delays(body)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        return answer()

    async def get_status(_: Request) -> Response:
        return JSONResponse({**status(), "faults": list(faults.active)})

    app = Starlette(
        routes=[
            Route("/faults", get_faults, methods=["GET"]),
            Route("/faults", put_faults, methods=["PUT"]),
            Route("/faults", clear_faults, methods=["DELETE"]),
            Route("/faults/{name}", add_fault, methods=["POST"]),
            Route("/delays", put_delays, methods=["PUT"]),
            Route("/status", get_status, methods=["GET"]),
        ]
    )
    return _Guard(app, token)
