"""The sandbox's auth service (contract section 1), behind its own "ALB" listener.

``POST /api/v1/keys/validate`` takes the key as ``Authorization: Bearer``, ``X-API-Key`` or body
field ``api_key``; checks the key, the ``service_id`` and the ``required_scope``; and answers with
the production body shapes for 200/400/401/429. Unauthenticated ``/health``, ``/ready``, ``/metrics``
and ``/`` answer like production. Anything else is the ALB's plain 404 (``/mlflow/`` included: the
isolation check).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.alb import no_healthy_target
from sandbox.faults import FaultState
from sandbox.settings import PlatformSettings

#: The service id a misconfigured auth deployment expects instead of ``platform`` (the seed's mix-up,
#: mirrored): with ``auth-wrong-service`` only this one validates.
WRONG_SERVICE_ID = "ml-platform"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the auth service's database holds about one key (never the key itself in a response)."""

    key_id: str
    user_id: str
    email: str
    scopes: tuple[str, ...]
    is_admin: bool
    revoked: bool = False


def build_key_table(settings: PlatformSettings) -> dict[str, KeyRecord]:
    """The sandbox's key database: the admin (monitoring) key, a non-admin key and a revoked key."""
    keys = settings.keys
    return {
        keys.admin: KeyRecord(
            str(uuid.uuid4()), "admin", "admin@sandbox.invalid", ("read", "write", "registry:admin"), True
        ),
        keys.non_admin: KeyRecord(
            str(uuid.uuid4()), "data-scientist", "ds@sandbox.invalid", ("read", "write"), False
        ),
        keys.revoked: KeyRecord(
            str(uuid.uuid4()), "former-employee", "gone@sandbox.invalid", ("read",), False, revoked=True
        ),
    }


def rate_limited_response(limit: int = 1000) -> JSONResponse:
    """429 with the headers production sends (``Retry-After`` and the ``X-RateLimit-*`` trio)."""
    reset = int(time.time()) + 60
    return JSONResponse(
        {"detail": "Rate limit exceeded"},
        status_code=429,
        headers={
            "Retry-After": "60",
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(reset),
        },
    )


class AlbFaults:
    """ASGI middleware: the listener's ALB, answering HTML 503 while the fault ``fault`` is active."""

    def __init__(self, app: ASGIApp, faults: FaultState, fault: str) -> None:
        self._app = app
        self._faults = faults
        self._fault = fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._fault in self._faults:
            await no_healthy_target()(scope, receive, send)
            return
        await self._app(scope, receive, send)


def extract_key(request: Request, body: dict[str, object]) -> str | None:
    """The key from ``Authorization: Bearer``, ``X-API-Key`` or the body's ``api_key``, in that order."""
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() in ("bearer", "apikey") and value.strip():
        return value.strip()
    header_key = request.headers.get("x-api-key", "").strip()
    if header_key:
        return header_key
    body_key = body.get("api_key")
    return body_key if isinstance(body_key, str) and body_key else None


def build_auth_app(settings: PlatformSettings, faults: FaultState) -> ASGIApp:
    """The auth service as an ASGI app, reading ``faults`` on every request."""
    table = build_key_table(settings)

    async def validate(request: Request) -> Response:
        if "auth-slow" in faults:
            await asyncio.sleep(faults.delay("auth_slow_s", settings.delays.auth_slow_s))
        if "rate-limited" in faults:
            return rate_limited_response()
        raw = await request.body()
        body: dict[str, object] = {}
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError:
                return JSONResponse({"detail": "Request body is not valid JSON"}, status_code=400)
            if isinstance(parsed, dict):
                body = parsed
        key = extract_key(request, body)
        if key is None:
            return JSONResponse({"detail": "No API key provided"}, status_code=400)
        record = table.get(key)
        if record is None or record.revoked:
            return JSONResponse({"detail": "API key not found or invalid"}, status_code=401)
        service_id = body.get("service_id")
        accepted = set(settings.accepted_service_ids)
        if "auth-wrong-service" in faults:
            accepted = (accepted - {"platform"}) | {WRONG_SERVICE_ID}
        if service_id is not None and service_id not in accepted:
            return JSONResponse(
                {"is_valid": False, "error": "Key not authorized for this service"}, status_code=401
            )
        required_scope = body.get("required_scope")
        if required_scope is not None and required_scope not in record.scopes:
            return JSONResponse(
                {"is_valid": False, "error": "Key does not have the required scope"}, status_code=401
            )
        roles = ["registry-admin"] if record.is_admin else ["user"]
        return JSONResponse(
            {
                "is_valid": True,
                "key_id": record.key_id,
                "user_id": record.user_id,
                "email": record.email,
                "service_id": service_id if isinstance(service_id, str) else "platform",
                "scopes": list(record.scopes),
                "roles": roles,
                "is_admin": record.is_admin,
                "rate_limit_per_hour": 1000,
                "billing_plan": "free",
                "user": {
                    "id": record.user_id,
                    "email": record.email,
                    "roles": roles,
                    "is_admin": record.is_admin,
                },
            }
        )

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "healthy", "service": "auth"})

    async def ready(_: Request) -> Response:
        return JSONResponse({"status": "ready", "checks": {"database": True, "redis": True}})

    async def root(_: Request) -> Response:
        return JSONResponse(
            {"service": "Hokusai Authentication Service", "version": "1.0.0", "status": "operational"}
        )

    async def metrics(_: Request) -> Response:
        return PlainTextResponse("# sandbox auth service: no metrics\n")

    app = Starlette(
        routes=[
            Route("/api/v1/keys/validate", validate, methods=["POST"]),
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", metrics),
            Route("/", root),
        ]
    )
    return AlbFaults(app, faults, "auth-down")
