"""The sandbox's registry API and MLflow proxy (contract section 2), behind the registry "ALB" listener.

Routes, as the production registry ALB and API split them:

- ``/api/mlflow/<rest>`` (all methods): key check against the auth service (timeout, short cache),
  registry-admin check, then forwarded to ``<mlflow><prefix>/<rest>`` with both bodies streamed --
  an artifact passes through in chunks and is never held whole in memory.
- ``/mlflow`` and ``/mlflow/<rest>``: the ALB's route to the MLflow target group (UI), no key.
- ``/health``, ``/ready``, ``/live``, ``/version``, ``/metrics``, ``/health/mlflow``,
  ``/api/health/mlflow``: unauthenticated. ``/api/health``: needs a valid key.
- anything else: the ALB's plain 404 (``POST /api/v1/keys/validate`` included: the isolation check).

Every fault that concerns the registry, the proxy or MLflow is applied here, per request.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from sandbox.alb import no_healthy_target
from sandbox.auth_app import AlbFaults, rate_limited_response
from sandbox.faults import FaultState
from sandbox.settings import PlatformSettings

# Hop-by-hop headers (RFC 9110 section 7.6.1) belong to one connection and are never forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Request headers the proxy sets itself; response headers uvicorn sets itself.
_REQUEST_DROP = _HOP_BY_HOP | {"host", "content-length"}
_RESPONSE_DROP = _HOP_BY_HOP | {"date", "server"}
_ARTIFACT_ROUTE = re.compile(r"^(ajax-)?api/2\.0/mlflow-artifacts/")
# A download names a file after ``artifacts/``; ``artifacts?path=`` (no file) is a listing.
_ARTIFACT_DOWNLOAD = re.compile(r"^(ajax-)?api/2\.0/mlflow-artifacts/artifacts/.+")


@dataclass(frozen=True, slots=True)
class Upstreams:
    """Where the proxy can send MLflow traffic: the real server, and the two broken variants.

    ``refused`` is a bound but never listening port (connection refused, for ``mlflow-down``);
    ``blackhole`` accepts connections and never answers (read timeout, for ``mlflow-timeout``).
    """

    mlflow: str
    refused: str
    blackhole: str


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a validated key belongs to, as the proxy needs it."""

    user_id: str
    key_id: str
    is_admin: bool


def _json_error(status: int, body: dict[str, object], retry_after: str | None = None) -> JSONResponse:
    headers = {"Retry-After": retry_after} if retry_after else None
    return JSONResponse(body, status_code=status, headers=headers)


class KeyValidator:
    """Validates keys against the auth service, with a short cache, as the production proxy does.

    Only successful validations are cached. The cache is dropped on every fault change (see
    :meth:`flush`) so that a fault switched on is visible on the very next request.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        auth_url: str,
        *,
        service_id: str,
        timeout_s: float,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._url = auth_url.rstrip("/") + "/api/v1/keys/validate"
        self._service_id = service_id
        self._timeout = timeout_s
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, Identity]] = {}

    def flush(self) -> None:
        """Forget every cached validation."""
        self._cache.clear()

    async def validate(self, key: str) -> Identity | Response:
        """The key's identity, or the registry's error response (401/429/503) for the caller."""
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            answer = await self._client.post(
                self._url,
                json={"service_id": self._service_id},
                headers={"Authorization": f"Bearer {key}"},
                timeout=self._timeout,
            )
        except httpx.TimeoutException:
            return _json_error(503, {"detail": "Authentication service timeout"}, retry_after="1")
        except httpx.TransportError:
            return _json_error(503, {"detail": "Authentication service unavailable"}, retry_after="1")
        if answer.status_code == 429:
            return _json_error(429, {"detail": "Authentication rate limit exceeded"}, retry_after="60")
        if answer.status_code in (400, 401, 403):
            return _json_error(401, {"detail": "Invalid or expired API key"})
        if answer.status_code >= 500:
            # The auth ALB's 503 (no healthy target) lands here too.
            return _json_error(503, {"detail": "Authentication service unavailable"}, retry_after="1")
        if answer.status_code != 200:
            return _json_error(503, {"detail": "Authentication service error"}, retry_after="1")
        try:
            body = answer.json()
        except ValueError:
            return _json_error(503, {"detail": "Authentication service error"}, retry_after="1")
        if not isinstance(body, dict) or body.get("is_valid") is not True:
            return _json_error(401, {"detail": "Invalid or expired API key"})
        scopes = body.get("scopes") or []
        identity = Identity(
            user_id=str(body.get("user_id", "")),
            key_id=str(body.get("key_id", "")),
            is_admin=bool(body.get("is_admin")) or "registry:admin" in scopes,
        )
        self._cache[key] = (now + self._ttl, identity)
        return identity


def extract_registry_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer|ApiKey``, ``X-API-Key`` or ``?api_key=``."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "apikey") and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or request.query_params.get("api_key") or None


def _corrupted(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The same number of bytes, every one of them different (``corrupt-artifact``)."""

    async def flip() -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield bytes(b ^ 0xFF for b in chunk)

    return flip()


class RegistryProxy:
    """The registry API: health routes, the authenticated MLflow proxy, and the ALB's MLflow route."""

    def __init__(
        self,
        settings: PlatformSettings,
        faults: FaultState,
        client: httpx.AsyncClient,
        validator: KeyValidator,
        upstreams: Upstreams,
    ) -> None:
        self._settings = settings
        self._faults = faults
        self._client = client
        self._validator = validator
        self._upstreams = upstreams
        self._prefix = "/" + settings.mlflow_prefix.strip("/") if settings.mlflow_prefix.strip("/") else ""
        faults.on_change(validator.flush)

    # -- upstream selection -------------------------------------------------------------------

    def upstream_base(self) -> str:
        """The MLflow base URL (with prefix) that the active faults route to."""
        if "mlflow-down" in self._faults:
            base = self._upstreams.refused
        elif "mlflow-timeout" in self._faults:
            base = self._upstreams.blackhole
        else:
            base = self._upstreams.mlflow
        return base.rstrip("/") + self._prefix

    def _timeout(self) -> httpx.Timeout:
        upstream = self._settings.delays.upstream_timeout_s
        return httpx.Timeout(upstream, connect=min(2.0, upstream))

    async def _mlflow_health(self) -> tuple[bool, float, str]:
        """Whether MLflow answers its health route through the current upstream, the latency, an error."""
        started = time.monotonic()
        try:
            answer = await self._client.get(self.upstream_base() + "/health", timeout=self._timeout())
        except httpx.TransportError as exc:
            return False, time.monotonic() - started, type(exc).__name__
        healthy = answer.status_code == 200
        return healthy, time.monotonic() - started, "" if healthy else f"HTTP {answer.status_code}"

    # -- unauthenticated health routes --------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """``/health``; ``?detailed=true`` also checks MLflow."""
        if "registry-health-503" in self._faults:
            return JSONResponse(
                {"status": "unhealthy", "checks": {"mlflow": "unknown", "redis": "error", "postgres": "ok"}},
                status_code=503,
            )
        if request.query_params.get("detailed", "").lower() == "true":
            healthy, _, error = await self._mlflow_health()
            checks = {"mlflow": "ok" if healthy else error, "redis": "ok", "postgres": "ok"}
            status = 200 if healthy else 503
            return JSONResponse({"status": "healthy" if healthy else "unhealthy", "checks": checks}, status)
        return JSONResponse({"status": "healthy", "service": "registry-api"})

    async def ready(self, _: Request) -> Response:
        """``/ready``: follows ``registry-health-503`` like ``/health``."""
        if "registry-health-503" in self._faults:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def health_mlflow(self, _: Request) -> Response:
        """``/health/mlflow``: 503 when MLflow does not answer (the production circuit breaker open)."""
        healthy, latency, error = await self._mlflow_health()
        if healthy:
            return JSONResponse({"status": "healthy", "latency_ms": round(latency * 1000, 1)})
        return JSONResponse({"status": "unhealthy", "error": error, "circuit_breaker": "open"}, 503)

    async def api_health_mlflow(self, _: Request) -> Response:
        """``/api/health/mlflow`` (2026 shape): a real registry call, with its latency."""
        started = time.monotonic()
        url = self.upstream_base() + "/api/2.0/mlflow/registered-models/search"
        try:
            answer = await self._client.get(url, params={"max_results": 1}, timeout=self._timeout())
        except httpx.TransportError as exc:
            return JSONResponse({"error_type": type(exc).__name__, "error": "MLflow unreachable"}, 503)
        if answer.status_code != 200:
            return JSONResponse(
                {"error_type": "HTTPStatusError", "error": f"MLflow answered {answer.status_code}"}, 503
            )
        models = answer.json().get("registered_models") or [{}]
        return JSONResponse(
            {
                "status": "ok",
                "tracking_uri": "/api/mlflow",
                "latency_ms": round((time.monotonic() - started) * 1000, 1),
                "sample_model": models[0].get("name"),
            }
        )

    async def simple(self, request: Request) -> Response:
        """``/live``, ``/version``, ``/metrics``: constant answers."""
        path = request.url.path
        if path == "/metrics":
            return PlainTextResponse("# sandbox registry: no metrics\n")
        if path == "/version":
            return JSONResponse({"version": "sandbox", "mlflow_prefix": self._prefix})
        return JSONResponse({"status": "alive"})

    # -- authenticated routes -----------------------------------------------------------------

    async def _authenticate(self, request: Request) -> Identity | Response:
        if "rate-limited" in self._faults:
            return rate_limited_response()
        key = extract_registry_key(request)
        if key is None:
            return _json_error(401, {"detail": "API key required"})
        outcome = await self._validator.validate(key)
        if isinstance(outcome, Response):
            return outcome
        if "admin-required" in self._faults or not outcome.is_admin:
            return _json_error(
                403,
                {
                    "detail": "Admin access required for the model registry",
                    "error": "REGISTRY_ADMIN_REQUIRED",
                },
            )
        return outcome

    async def api_health(self, request: Request) -> Response:
        """``/api/health``: the registry API's own health, behind the key check."""
        outcome = await self._authenticate(request)
        if isinstance(outcome, Response):
            return outcome
        return JSONResponse({"status": "healthy", "service": "registry-api"})

    async def mlflow_proxy(self, request: Request) -> Response:
        """``/api/mlflow/<rest>``: authenticate, apply the faults, forward with streamed bodies."""
        outcome = await self._authenticate(request)
        if isinstance(outcome, Response):
            return outcome
        rest = request.path_params.get("rest", "")
        if _ARTIFACT_ROUTE.match(rest):
            if "artifacts-404" in self._faults:
                # The seed incident: the proxy had no route for the artifact API.
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            if "artifacts-disabled" in self._faults:
                # MLflow 3.17's own answer when started with --no-serve-artifacts.
                return JSONResponse(
                    {
                        "detail": "Artifact serving is disabled. "
                        "Run mlflow server with --serve-artifacts to enable."
                    },
                    status_code=503,
                )
            if "artifact-store-500" in self._faults:
                return JSONResponse(
                    {
                        "error_code": "INTERNAL_ERROR",
                        "message": "An error occurred (AccessDenied) when calling the PutObject "
                        "operation: Access Denied",
                    },
                    status_code=500,
                )
            if "artifacts-slow" in self._faults:
                # S3 (or the path to it) slow: every artifact call takes that much longer.
                await asyncio.sleep(
                    self._faults.delay("artifacts_slow_s", self._settings.delays.artifacts_slow_s)
                )
        headers = self._forward_headers(request)
        headers["X-Hokusai-User-Id"] = outcome.user_id
        headers["X-Hokusai-API-Key-Id"] = outcome.key_id
        if "strip-authorization" in self._faults:
            # The July 2025 proxy bug: credentials removed before MLflow.
            headers.pop("authorization", None)
            headers.pop("x-api-key", None)
        if "authorization" not in headers and "x-api-key" not in headers:
            # Production MLflow sits behind a gateway that requires the key; the sandbox's MLflow has
            # no auth of its own, so this last hop plays that gateway.
            return JSONResponse({"error_code": "UNAUTHENTICATED", "message": "API key required"}, 401)
        corrupt = (
            "corrupt-artifact" in self._faults
            and request.method == "GET"
            and _ARTIFACT_DOWNLOAD.match(rest) is not None
        )
        return await self._forward(request, rest, headers, corrupt=corrupt, api=True)

    async def mlflow_ui(self, request: Request) -> Response:
        """``/mlflow*``: the ALB's rule to the MLflow target group, no key involved."""
        if "mlflow-down" in self._faults:
            return no_healthy_target()
        rest = request.url.path.removeprefix("/mlflow").lstrip("/")
        return await self._forward(request, rest, self._forward_headers(request), corrupt=False, api=False)

    # -- forwarding ---------------------------------------------------------------------------

    def _forward_headers(self, request: Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k not in _REQUEST_DROP}
        if "content-length" in request.headers:
            # Kept so that httpx sends a sized body, not chunked: MLflow's WSGI artifact handler
            # reads exactly Content-Length bytes.
            headers["content-length"] = request.headers["content-length"]
        client = request.client.host if request.client else ""
        headers["x-forwarded-for"] = client
        headers["x-forwarded-host"] = request.headers.get("host", "")
        headers["x-forwarded-proto"] = request.url.scheme
        return headers

    async def _forward(
        self, request: Request, rest: str, headers: dict[str, str], *, corrupt: bool, api: bool
    ) -> Response:
        if "mlflow-slow" in self._faults:
            await asyncio.sleep(self._faults.delay("mlflow_slow_s", self._settings.delays.mlflow_slow_s))
        url = self.upstream_base() + "/" + rest
        if request.url.query:
            # Forwarded verbatim: re-encoding could change what MLflow sees.
            url += "?" + request.url.query
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        upstream_request = self._client.build_request(
            request.method,
            url,
            headers=headers,
            content=request.stream() if has_body else None,
            timeout=self._timeout(),
        )
        try:
            upstream = await self._client.send(upstream_request, stream=True)
        except httpx.TimeoutException:
            return _json_error(504, {"error": "MLFLOW_TIMEOUT", "detail": "MLflow request timed out"})
        except httpx.ConnectError:
            return _json_error(502, {"error": "MLFLOW_UNAVAILABLE", "detail": "Failed to connect to MLflow"})
        except httpx.HTTPError as exc:
            return _json_error(500, {"error": "PROXY_ERROR", "detail": type(exc).__name__})
        content_type = upstream.headers.get("content-type", "")
        if api and upstream.status_code == 404 and content_type.startswith("text/html"):
            # 2026 behaviour: MLflow's HTML 404 page becomes a JSON error for API clients.
            await upstream.aclose()
            return JSONResponse({"error_code": "RESOURCE_NOT_FOUND", "message": "Not Found"}, 404)
        body = upstream.aiter_raw()
        return StreamingResponse(
            _corrupted(body) if corrupt else body,
            status_code=upstream.status_code,
            headers={k: v for k, v in upstream.headers.items() if k.lower() not in _RESPONSE_DROP},
            background=BackgroundTask(upstream.aclose),
        )


def build_registry_app(
    settings: PlatformSettings,
    faults: FaultState,
    client: httpx.AsyncClient,
    auth_url: str,
    upstreams: Upstreams,
) -> ASGIApp:
    """The registry listener as an ASGI app (its ALB included)."""
    validator = KeyValidator(
        client,
        auth_url,
        service_id=settings.registry_service_id,
        timeout_s=settings.delays.auth_timeout_s,
        ttl_s=settings.delays.key_cache_ttl_s,
    )
    proxy = RegistryProxy(settings, faults, client, validator, upstreams)
    all_methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    app = Starlette(
        routes=[
            Route("/health", proxy.health),
            Route("/ready", proxy.ready),
            Route("/live", proxy.simple),
            Route("/version", proxy.simple),
            Route("/metrics", proxy.simple),
            Route("/health/mlflow", proxy.health_mlflow),
            Route("/api/health/mlflow", proxy.api_health_mlflow),
            Route("/api/health", proxy.api_health),
            Route("/api/mlflow/{rest:path}", proxy.mlflow_proxy, methods=all_methods),
            Route("/mlflow", proxy.mlflow_ui, methods=all_methods),
            Route("/mlflow/{rest:path}", proxy.mlflow_ui, methods=all_methods),
        ]
    )
    return AlbFaults(app, faults, "alb-no-healthy-target")
