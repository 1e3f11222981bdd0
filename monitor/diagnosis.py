"""Failure signatures → likely cause, hint and action.

The runner calls :func:`diagnose` on every FAIL/ERROR step that has no diagnosis yet. Signatures are
matched in order, first match wins: config-supplied ones first (``diagnosis:`` in config.yaml), then
:data:`BUILTIN_SIGNATURES`, which encode every row of the platform contract's §6 plus the failure
modes the five built-in probes report themselves (``accepts_invalid_key``, ``service_id_mismatch``,
``checksum_mismatch``, ...). Everything here is pure: a step in, a diagnosis out.

Rows whose body text is unmistakable (``REGISTRY_ADMIN_REQUIRED``, "Artifact serving is disabled")
do not require an HTTP status: the MLflow client often loses the status in its exception, and the
registration and ``client_search`` steps carry the exception text as their body excerpt.

Ordering within the built-ins matters: specific rows (a 503 whose body says artifact serving is
disabled) come before generic ones (any 503 from the ALB), and transport-level rows come last.

A cause code (``artifact_route_not_deployed``) is stable for machines: metrics, history, signatures.
People read its title (:func:`cause_title`, "Artifact storage not deployed"), the words the seed
report put on its status line; a code without a written title reads as its words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, field_validator

from probes.base import Diagnosis, StepResult


class Signature(BaseModel):
    """One row: conditions (all given ones must match) → a diagnosis.

    ``http_status`` matches exactly; ``http_status_min``/``http_status_max`` give a range (e.g. any
    5xx); regexes are searched (not anchored) case-insensitively; ``error_class``, ``probe`` and
    ``step`` match exactly. ``message_regex`` matches the step's human message, which is where
    subprocess steps (the MLflow client) carry the exception text. ``title`` (optional) is the
    cause in words that alerts show instead of :func:`cause_title` of the code.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cause: str
    hint: str
    action: str = ""
    #: The cause in words for people (Slack, status page); empty: the built-in title of ``cause``.
    title: str = ""
    http_status: int | None = None
    path_regex: str | None = None
    body_regex: str | None = None
    error_class: str | None = None
    probe: str | None = None
    step: str | None = None
    http_status_min: int | None = None
    http_status_max: int | None = None
    message_regex: str | None = None
    content_type_regex: str | None = None

    @field_validator("path_regex", "body_regex", "message_regex", "content_type_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        # A broken regex in config must stop start-up with a clear error, not fail at 3 a.m.
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
        return value

    def matches(self, step: StepResult, probe: str | None = None) -> bool:
        """True when every condition this row sets holds for ``step`` (run by ``probe``)."""
        if self.http_status is not None and step.http_status != self.http_status:
            return False
        if self.http_status_min is not None and (
            step.http_status is None or step.http_status < self.http_status_min
        ):
            return False
        if self.http_status_max is not None and (
            step.http_status is None or step.http_status > self.http_status_max
        ):
            return False
        if self.error_class is not None and step.error_class != self.error_class:
            return False
        if self.probe is not None and probe != self.probe:
            return False
        if self.step is not None and step.name != self.step:
            return False
        checks = (
            (self.path_regex, step.path),
            (self.body_regex, step.body_excerpt),
            (self.message_regex, step.message),
            (self.content_type_regex, step.content_type),
        )
        for pattern, value in checks:
            if pattern is not None and (value is None or not _compiled(pattern).search(value)):
                return False
        return True

    def diagnosis(self) -> Diagnosis:
        """The diagnosis this row attaches."""
        return Diagnosis(cause=self.cause, hint=self.hint, action=self.action, title=self.title)


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_ARTIFACTS = r"/mlflow-artifacts/"

BUILTIN_SIGNATURES: tuple[Signature, ...] = (
    # --- the probes' own verdicts (error classes they set) -----------------------------------
    Signature(
        cause="auth_accepts_invalid_key",
        error_class="accepts_invalid_key",
        hint="the auth service validated a deliberately invalid API key: authentication is open",
        action="Treat as a security incident: check the auth service's key lookup and any bypass flag.",
    ),
    Signature(
        cause="auth_service_id_mismatch",
        error_class="service_id_mismatch",
        hint="the key validated, but for a different service_id than the one the platform expects",
        action="Check the service_id the clients send (the platform's is 'platform', not 'ml-platform').",
    ),
    Signature(
        cause="auth_scope_missing",
        error_class="scope_missing",
        hint="the monitoring key validated but lacks a required scope",
        action="Grant the missing scope to the monitoring key.",
    ),
    Signature(
        cause="artifact_corrupted",
        error_class="checksum_mismatch",
        hint="the artifact read back differs from what was written (size or SHA-256)",
        action="Check the artifact store and any proxy that rewrites or truncates bodies.",
    ),
    Signature(
        cause="artifact_corrupted",
        error_class="artifact_unreadable",
        hint="the model's files were downloaded but do not parse: the stored artifacts are corrupted",
        action="Check the artifact store and any proxy that rewrites bodies; re-upload the model.",
    ),
    Signature(
        cause="model_prediction_mismatch",
        error_class="prediction_mismatch",
        hint="the model loaded back from the registry predicts differently from the one logged",
        action="Check artifact integrity in the store (corrupted or substituted model files).",
    ),
    Signature(
        cause="model_version_not_ready",
        error_class="not_ready",
        hint="the registered model version did not reach READY in time",
        action="Check MLflow's model-version creation and the artifact copy to the registry location.",
    ),
    # --- contract §6 -------------------------------------------------------------------------
    Signature(
        cause="artifacts_disabled",
        body_regex=r"Artifact serving is disabled|ARTIFACTS_DISABLED",
        hint="MLflow runs without --serve-artifacts (artifact routes answer 503)",
        action="Restart the MLflow task with --serve-artifacts and an --artifacts-destination.",
    ),
    Signature(
        cause="artifact_route_not_deployed",
        http_status=404,
        path_regex=_ARTIFACTS,
        hint=(
            "artifact route not deployed or not routed through the proxy "
            "(…/api/mlflow/api/2.0/mlflow-artifacts/… answers 404)"
        ),
        action=(
            "Check the proxy's route for /api/mlflow/api/2.0/mlflow-artifacts/* and the MLflow "
            "static-prefix layout it forwards to; confirm MLflow runs with --serve-artifacts."
        ),
    ),
    Signature(
        cause="artifact_store_error",
        http_status=500,
        path_regex=_ARTIFACTS,
        hint="MLflow could not write or read the artifact store (S3 permissions or bucket missing)",
        action="Check the MLflow task role's S3 permissions and that the artifact bucket exists.",
    ),
    Signature(
        cause="missing_max_results",
        http_status=400,
        body_regex=r"max_results",
        hint="experiments/search sent without max_results (a client bug, not an outage)",
        action="Send max_results on every experiments/search request.",
    ),
    Signature(
        cause="alb_no_healthy_target",
        http_status=503,
        body_regex=r"Service Temporarily Unavailable",
        hint="the ALB has no healthy target (task down or failing its target-group health check)",
        action="Check the ECS service's running tasks and the target group's health-check results.",
    ),
    Signature(
        cause="alb_no_healthy_target",
        error_class="alb_503",
        hint="the ALB has no healthy target (an HTML 503 generated by the load balancer)",
        action="Check the ECS service's running tasks and the target group's health-check results.",
    ),
    Signature(
        cause="auth_upstream_unavailable",
        http_status=401,
        body_regex=r"Authentication service (error|timeout)",
        hint="the registry could not reach the auth service (down or slower than the proxy's 5 s timeout)",
        action="Check the auth service's health and latency; the registry rejects every key meanwhile.",
    ),
    Signature(
        cause="auth_upstream_unavailable",
        http_status=503,
        body_regex=r"auth",
        hint="the registry answers 503 because its auth upstream is down or slow",
        action="Check the auth service's health and latency; the registry rejects every key meanwhile.",
    ),
    Signature(
        cause="proxy_strips_authorization",
        body_regex=r"API key required",
        hint="a key was sent but the request arrived without it: the proxy strips Authorization",
        action="Check that the registry proxy forwards Authorization/X-API-Key to MLflow.",
    ),
    Signature(
        cause="api_key_rejected",
        body_regex=r"Invalid or expired API key|API key not found or invalid|not authorized for this service",
        hint="the key was rejected: wrong service_id, revoked or expired key, or a stale auth cache",
        action="Validate the key with service_id 'platform'; check revocation (auth caches results 5 min).",
    ),
    Signature(
        cause="registry_admin_required",
        body_regex=r"REGISTRY_ADMIN_REQUIRED|Admin access required",
        hint="the monitoring key lacks registry-admin scope",
        action="Use a registry-admin key for synthmon (SYNTHMON_API_KEY).",
    ),
    Signature(
        cause="mlflow_invalid_host",
        body_regex=r"Invalid Host header",
        hint="MLflow's allowed-hosts list does not include the host the proxy forwards",
        action="Add the proxy's upstream host to MLflow's --allowed-hosts.",
    ),
    Signature(
        cause="mlflow_unreachable",
        http_status=502,
        hint="the registry cannot connect to MLflow (task down or wrong upstream address)",
        action="Check the MLflow ECS task and the registry's MLflow upstream URL.",
    ),
    Signature(
        cause="mlflow_timeout",
        http_status=504,
        hint="MLflow answered slower than the proxy's 30 s timeout",
        action="Check MLflow's latency, its database and its worker count.",
    ),
    Signature(
        cause="rate_limited",
        http_status=429,
        hint="the platform rate-limits the monitoring key",
        action="Raise the monitoring key's rate limit or lengthen probe intervals.",
    ),
    Signature(
        cause="api_key_rejected",
        http_status=401,
        hint="the platform answered 401: the monitoring key is not accepted",
        action="Validate the key against the auth service with service_id 'platform'.",
    ),
    Signature(
        cause="forbidden",
        http_status=403,
        hint="the platform refused the request (key permissions, a WAF rule, or a host allow-list)",
        action="Read the body; check the key's scopes and any WAF or allowed-hosts setting.",
    ),
    Signature(
        cause="application_unavailable",
        http_status=503,
        hint="the application answered 503 itself (a dependency check failed), not the ALB",
        action="Read the body's failing checks (database, redis, mlflow) and the service's logs.",
    ),
    Signature(
        cause="route_not_found",
        http_status=404,
        hint="the path is not routed (an ALB fixed 404 or a missing route in the service)",
        action="Check the ALB listener rules and the service's mounted routes for this path.",
    ),
    Signature(
        cause="unexpected_redirect",
        http_status_min=300,
        http_status_max=399,
        hint="a redirect where an answer was expected (an http→https listener rule or a login page)",
        action="Point the probe at the final URL, or enable follow_redirects for this check.",
    ),
    Signature(
        cause="server_error",
        http_status_min=500,
        http_status_max=599,
        hint="the service failed with a 5xx",
        action="Read the service's logs around this time.",
    ),
    Signature(
        cause="unexpected_status",
        error_class="http_status",
        hint="the target answered with a status the check does not expect",
        action="Compare the answer with the check's expected statuses; a route or its owner changed.",
    ),
    # --- transport ---------------------------------------------------------------------------
    Signature(
        cause="tls_error",
        error_class="tls_error",
        hint="TLS handshake failed (expired or untrusted certificate, or wrong host)",
        action="Check the listener's certificate in ACM and its expiry.",
    ),
    Signature(
        cause="dns_failure",
        error_class="dns_error",
        hint="the host name does not resolve",
        action="Check the DNS record for the target and the resolver the monitor uses.",
    ),
    Signature(
        cause="connection_refused",
        error_class="connect_error",
        hint="nothing accepts connections at the target (service or ALB down, or security group)",
        action="Check that the service is running and reachable from the monitor's network.",
    ),
    Signature(
        cause="connection_reset",
        error_class="connection_reset",
        hint="the connection was reset mid-exchange (a crashing backend or an idle-timeout mismatch)",
        action="Check the target's logs for crashes and the ALB/backend keep-alive timeouts.",
    ),
    Signature(
        cause="timeout",
        message_regex=r"timeout|timed out",
        hint="the target did not answer within the step's time budget",
        action="Check the target's latency and what it waits on (database, upstream).",
    ),
    Signature(
        cause="unexpected_body",
        error_class="body_mismatch",
        hint="the target answered, but not with the body the check expects",
        action="Compare the body excerpt with the expected shape; a proxy or error page may answer.",
    ),
    Signature(
        cause="body_too_large",
        error_class="body_too_large",
        hint="the body exceeded the probe's cap (an error page loop or a wrong route)",
        action="Check what the route serves; raise max_body only if the size is expected.",
    ),
)


#: The cause in words for every built-in cause code: what is broken, as a headline (no trailing stop).
CAUSE_TITLES: Mapping[str, str] = {
    "auth_accepts_invalid_key": "Auth service accepts an invalid API key",
    "auth_service_id_mismatch": "API key valid for the wrong service",
    "auth_scope_missing": "Monitoring key lacks a required scope",
    "artifact_corrupted": "Stored artifacts corrupted",
    "model_prediction_mismatch": "Registered model predicts differently from the logged one",
    "model_version_not_ready": "Model version never became ready",
    "artifacts_disabled": "Artifact serving disabled in MLflow",
    "artifact_route_not_deployed": "Artifact storage not deployed",
    "artifact_store_error": "Artifact store (S3) failing",
    "missing_max_results": "Experiment search sent without max_results",
    "alb_no_healthy_target": "Load balancer has no healthy target",
    "auth_upstream_unavailable": "Registry cannot reach the auth service",
    "proxy_strips_authorization": "Registry proxy drops the API key",
    "api_key_rejected": "API key rejected",
    "registry_admin_required": "Monitoring key lacks registry-admin access",
    "mlflow_invalid_host": "MLflow rejects the proxy's Host header",
    "mlflow_unreachable": "Registry cannot reach MLflow",
    "mlflow_timeout": "MLflow slower than the proxy's timeout",
    "rate_limited": "Monitoring key rate-limited",
    "forbidden": "Request refused (403)",
    "application_unavailable": "Service reports itself unavailable (503)",
    "route_not_found": "Route not found (404)",
    "unexpected_redirect": "Unexpected redirect",
    "server_error": "Server error (5xx)",
    "unexpected_status": "Unexpected HTTP status",
    "tls_error": "TLS handshake failed",
    "dns_failure": "Host name does not resolve",
    "connection_refused": "Connection refused",
    "connection_reset": "Connection reset",
    "timeout": "No answer in time",
    "unexpected_body": "Unexpected response body",
    "body_too_large": "Response body too large",
}


#: Causes that say how a request failed, not what in the platform is broken: two probes sharing one
#: of these may be two unrelated outages, so they never correlate by cause alone.
GENERIC_CAUSES: frozenset[str] = frozenset(
    {
        "forbidden",
        "application_unavailable",
        "route_not_found",
        "unexpected_redirect",
        "server_error",
        "unexpected_status",
        "tls_error",
        "dns_failure",
        "connection_refused",
        "connection_reset",
        "timeout",
        "unexpected_body",
        "body_too_large",
    }
)


def cause_title(cause: str) -> str:
    """``cause`` in words: its written title, else the code read as words (``vpn_down`` → "Vpn down").

    Config rows with their own cause codes get the derived form, so every cause reads as words.
    """
    title = CAUSE_TITLES.get(cause)
    if title:
        return title
    words = " ".join(cause.replace("_", " ").replace("-", " ").split())
    return words[:1].upper() + words[1:] if words else cause


def diagnose(
    step: StepResult, signatures: Sequence[Signature] = BUILTIN_SIGNATURES, *, probe: str | None = None
) -> Diagnosis | None:
    """The first matching signature's diagnosis for a failing ``step``, or None.

    Callers wanting config rows plus built-ins pass ``[*config_rows, *BUILTIN_SIGNATURES]``.
    """
    for signature in signatures:
        if signature.matches(step, probe):
            return signature.diagnosis()
    return None
