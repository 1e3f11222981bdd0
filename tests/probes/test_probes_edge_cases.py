"""Edge cases of every HTTP-speaking platform probe, with httpx.MockTransport.

Each broken answer or transport failure must become a FAIL step with a diagnosed cause, never an
unhandled exception, and never a message that shows the key.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from probes_helpers import generated_key, make_ctx, mock

from monitor.diagnosis import diagnose
from probes.alb_health import DEFAULT_CHECKS, AlbHealthOptions, AlbHealthProbe
from probes.artifact_roundtrip import ArtifactRoundtripOptions, ArtifactRoundtripProbe
from probes.auth import AuthOptions, AuthProbe
from probes.base import Probe, Status
from probes.mlflow_api import MlflowApiOptions, MlflowApiProbe


def _no_client_checks() -> AlbHealthOptions:
    return AlbHealthOptions(checks=tuple(c for c in DEFAULT_CHECKS if c.kind == "http"))


PROBES: dict[str, Callable[[], Probe]] = {
    "auth": lambda: AuthProbe("auth", AuthOptions()),
    "alb_health": lambda: AlbHealthProbe("alb_health", _no_client_checks()),
    "mlflow_api": lambda: MlflowApiProbe("mlflow_api", MlflowApiOptions(client_search=False)),
    "artifact_roundtrip": lambda: ArtifactRoundtripProbe(
        "artifact_roundtrip", ArtifactRoundtripOptions(payload_bytes=1024)
    ),
}


def _garbage_json(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b'{"is_valid": tru', headers={"content-type": "application/json"})


def _wrong_content_type(_: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, content=b"<html><body>Sign in</body></html>", headers={"content-type": "text/html"}
    )


def _huge_body(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"x" * (3 * 1024 * 1024), headers={"content-type": "text/plain"})


def _redirect(_: httpx.Request) -> httpx.Response:
    return httpx.Response(302, headers={"location": "https://sso.example/login"})


def _raiser(exc: type[httpx.TransportError], text: str) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc(text, request=request)

    return handler


#: The cause of the first failing step, by probe: what the failing step talks to is what is broken
#: (auth service, registry, MLflow, the artifact routes), the way it failed is in its error class.
UNREACHABLE = {
    "alb_health": "auth_service_unreachable",
    "artifact_roundtrip": "registry_unreachable",
    "auth": "auth_service_unreachable",
    "mlflow_api": "registry_unreachable",
}
ANSWERED_WRONGLY = {
    "alb_health": "auth_service_unhealthy",
    "artifact_roundtrip": "artifact_upload_rejected",
    "auth": "auth_service_unhealthy",
    "mlflow_api": "mlflow_api_failing",
}
# A 200 with a body no check accepts: only the isolation check (expects 404) and the body checks fail.
BAD_BODY = {
    "alb_health": "registry_alb_serves_auth_api",
    "artifact_roundtrip": "artifact_list_failing",
    "auth": "auth_validation_failing",
    "mlflow_api": "mlflow_api_failing",
}

EDGE_CASES: dict[str, tuple[Callable[[httpx.Request], httpx.Response], dict[str, str]]] = {
    "garbage_json": (_garbage_json, BAD_BODY),
    "wrong_content_type": (_wrong_content_type, BAD_BODY),
    "huge_body": (_huge_body, ANSWERED_WRONGLY),
    "redirect": (_redirect, ANSWERED_WRONGLY),
    "tls_error": (
        _raiser(httpx.ConnectError, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
        UNREACHABLE,
    ),
    "dns_failure": (_raiser(httpx.ConnectError, "[Errno -2] Name or service not known"), UNREACHABLE),
    "connection_reset": (_raiser(httpx.ReadError, "[Errno 104] Connection reset by peer"), UNREACHABLE),
}
#: The transport error class each transport case must keep (the cause says what, the class how).
ERROR_CLASSES = {"tls_error": "tls_error", "dns_failure": "dns_error", "connection_reset": "connection_reset"}


@pytest.mark.parametrize("case", sorted(EDGE_CASES), ids=sorted(EDGE_CASES))
@pytest.mark.parametrize("probe_name", sorted(PROBES), ids=sorted(PROBES))
async def test_edge_case_is_a_diagnosed_fail_not_an_exception(probe_name: str, case: str) -> None:
    """A broken answer or transport failure is a FAIL step whose cause names the component it talks
    to (its error class says how it failed), and never shows the key."""
    handler, causes = EDGE_CASES[case]
    key = generated_key()
    ctx = make_ctx(mock(handler), key=key)
    async with ctx.http:
        steps = await PROBES[probe_name]().run(ctx)
    failing = [s for s in steps if s.status is Status.FAIL]
    assert failing, [s.to_dict() for s in steps]
    first = failing[0]
    assert first.error_class
    if case in ERROR_CLASSES:
        assert first.error_class == ERROR_CLASSES[case]
    diagnosis = diagnose(first, probe=probe_name)
    assert diagnosis is not None, first
    assert diagnosis.cause == causes[probe_name], (first, diagnosis)
    assert key not in json.dumps([s.to_dict() for s in steps])


async def test_huge_body_is_capped_not_read_whole() -> None:
    """A body over the cap is cut at the cap: the excerpt is short and the step says body_too_large."""
    ctx = make_ctx(mock(_huge_body))
    async with ctx.http:
        steps = await AuthProbe("auth", AuthOptions()).run(ctx)
    assert steps[0].error_class == "body_too_large"
    assert steps[0].body_excerpt is not None
    assert len(steps[0].body_excerpt) <= 300


async def test_unreachable_auth_skips_later_steps() -> None:
    """When auth health cannot connect, ready/validate/rejects_invalid_key are SKIPPED, not FAIL."""
    ctx = make_ctx(mock(_raiser(httpx.ConnectError, "[Errno 111] Connection refused")))
    async with ctx.http:
        steps = await AuthProbe("auth", AuthOptions()).run(ctx)
    assert [(s.name, s.status) for s in steps] == [
        ("health", Status.FAIL),
        ("ready", Status.SKIPPED),
        ("validate", Status.SKIPPED),
        ("rejects_invalid_key", Status.SKIPPED),
    ]
    assert steps[0].error_class == "connect_error"
