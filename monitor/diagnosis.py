"""Failure signatures → likely cause, hint and action.

The runner calls :func:`diagnose` on every FAIL/ERROR step that has no diagnosis yet. Signatures are
matched in order, first match wins: config-supplied ones first (``diagnosis:`` in config.yaml), then
:data:`BUILTIN_SIGNATURES`, which encode every row of the platform contract's §6 plus the failure
modes the five built-in probes report themselves (``accepts_invalid_key``, ``service_id_mismatch``,
``checksum_mismatch``, ...). Everything here is pure: a step in, a diagnosis out.

Rows whose body text is unmistakable (``REGISTRY_ADMIN_REQUIRED``, "Artifact serving is disabled")
do not require an HTTP status: the MLflow client often loses the status in its exception, and the
registration and ``client_search`` steps carry the exception text as their body excerpt.

Ordering within the built-ins matters, most specific first:

1. the probes' own verdicts (error classes a probe sets because it knows more than one answer
   shows: a download 404 right after the upload worked is a lost object, not a missing route);
2. the monitor's own failures (ERROR steps), never blamed on the platform;
3. contract §6 symptoms: unmistakable bodies, routing isolation, routes and statuses;
4. stage rows: a failure no symptom explains is blamed on the component its step talks to
   (auth service, registry, MLflow, artifacts, the registration stages), unreachable / slow /
   answering wrongly;
5. generic rows (:data:`GENERIC_CAUSES`), how a request failed: the last resort, reached by the
   generic ``http`` kind and custom ALB checks.

A cause code (``artifact_route_not_deployed``) is stable for machines: metrics, history, signatures.
People read its title (:func:`cause_title`, "Artifact storage not deployed"), the words the seed
report put on its status line; a code without a written title reads as its words.

The module is long because :data:`BUILTIN_SIGNATURES` is data: one table of about 75 rows that
must be read in its match order, so it stays in one place with the titles of its causes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from monitor.configfile import path_error
from probes.base import RUN_STEP, Diagnosis, Status, StepResult


class Signature(BaseModel):
    """One row: conditions (all given ones must match) → a diagnosis.

    ``http_status`` matches exactly; ``http_status_min``/``http_status_max`` give a range (e.g. any
    5xx); regexes are searched (not anchored) case-insensitively; ``error_class``, ``probe`` and
    ``step`` match exactly; ``step_regex`` and ``error_class_regex`` match several names at once,
    ``status`` the step's status (``ERROR``: the monitor's own failures). ``message_regex`` matches
    the step's human message, which is where subprocess steps (the MLflow client) carry the
    exception text. ``title`` (optional) is the cause in words that alerts show instead of
    :func:`cause_title` of the code.
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
    step_regex: str | None = None
    error_class_regex: str | None = None
    status: Status | None = None

    @field_validator(
        "path_regex", "body_regex", "message_regex", "content_type_regex", "step_regex", "error_class_regex"
    )
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
        if self.status is not None and step.status is not self.status:
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
            (self.step_regex, step.name),
            (self.error_class_regex, step.error_class),
        )
        for pattern, value in checks:
            if pattern is not None and (value is None or not _compiled(pattern).search(value)):
                return False
        return True

    def diagnosis(self) -> Diagnosis:
        """The diagnosis this row attaches."""
        return Diagnosis(cause=self.cause, hint=self.hint, action=self.action, title=self.title)


#: Signature fields that say what a row diagnoses; every other set field is a condition.
_OUTPUT = frozenset({"cause", "hint", "action", "title"})


def check_signatures(
    rows: Sequence[Signature], steps: Mapping[str, Sequence[str] | None]
) -> PydanticCustomError | None:
    """The first problem of the config's own ``diagnosis:`` rows, as an error naming its field path,
    or None. ``steps``: the configured probes and the steps each reports (None: only a run can tell).

    A row without conditions would match every failing step and hide the built-in table. A row
    naming a probe the config lacks, or a step its probe (or, without ``probe``, every probe) never
    reports, would never match: a typo found only at the outage the row was written for. The
    runner's own step (:data:`probes.base.RUN_STEP`, a run that raised or ran out of time) is
    every probe's.
    """
    known = ", ".join(steps) or "(none)"
    for i, row in enumerate(rows):
        if not set(row.model_dump(exclude_none=True)) - _OUTPUT:
            return path_error(
                ("diagnosis", i),
                "a diagnosis row needs at least one condition (http_status, path_regex, "
                "body_regex, error_class, probe, step, ...); this one would match every failure",
            )
        if row.probe is not None and row.probe not in steps:
            return path_error(("diagnosis", i, "probe"), f"unknown probe {row.probe!r}; configured: {known}")
        among = [steps[row.probe]] if row.probe is not None else list(steps.values())
        if row.step is None or row.step == RUN_STEP or any(names is None for names in among):
            continue
        reported = sorted({name for names in among for name in names or ()})
        if row.step not in reported:
            said = (
                f"probe {row.probe!r} reports no step {row.step!r}; its steps"
                if row.probe is not None
                else f"no configured probe reports a step {row.step!r}; their steps"
            )
            return path_error(("diagnosis", i, "step"), f"{said}: {', '.join(reported) or '(none)'}")
    return None


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_ARTIFACTS = r"/mlflow-artifacts/"
#: MLflow's REST API (not its artifact routes), under whichever mount the proxy uses.
_MLFLOW_API = r"/api/2\.0/mlflow/"
#: Anything routed to MLflow: the API, the artifact routes, the UI.
_MLFLOW_ANY = r"mlflow"

# Transport error classes (probes.support.httpstep and the MLflow child's) by what they say: the
# monitor could not hold a conversation with the host, or the host did not answer in time.
_UNREACHABLE = (
    r"^(connect_error|connect_timeout|dns_error|tls_error|connection_reset|connection_closed|broken_pipe"
    r"|protocol_error|read_error"
    r"|write_error|transport_error|too_many_redirects|unsupported_protocol|ConnectionError)$"
)
_SLOW = r"^(read_timeout|write_timeout|pool_timeout|timeout|ReadTimeout|Timeout)$"


def _steps(*names: str) -> str:
    """A ``step_regex`` matching exactly the step names given."""
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


# The built-in kinds' step names by the component they talk to (alb_health's by its shipped check
# names). Stage rows below use them: a failure no symptom row explains is blamed on the component
# the failing step talks to, knowing what the steps before it proved (e.g. a delete that fails
# after the upload worked is not a missing route). An ``http`` probe or a custom ALB check whose
# step is named like one of these borrows its diagnosis; other names end at the generic rows.
AUTH_HEALTH_STEPS = ("health", "auth_health", "auth_root")
AUTH_VALIDATE_STEPS = ("validate", "rejects_invalid_key", "auth_validate")
AUTH_STEPS = (*AUTH_HEALTH_STEPS, "ready", *AUTH_VALIDATE_STEPS, "isolation_auth_has_no_mlflow", "cert_auth")
REGISTRY_HEALTH_STEPS = ("registry_health", "registry_api_health")
MLFLOW_API_STEPS = (
    "experiments_search",
    "registered_models_search",
    "experiment",
    "client_search",
    "mlflow_api_proxy",
    "mlflow_client",
    "set_experiment",
)
ARTIFACT_STEPS = ("upload", "list", "download", "verify", "delete")
REGISTRATION_STEPS = ("log_model", "register", "wait_ready", "load", "predict", "cleanup")
REGISTRY_STEPS = (
    *REGISTRY_HEALTH_STEPS,
    "isolation_registry_has_no_auth_api",
    "mlflow_ui",
    *MLFLOW_API_STEPS,
    *ARTIFACT_STEPS,
    *REGISTRATION_STEPS,
    "cert_registry",
)


def _stage(cause: str, steps: Sequence[str], hint: str, action: str, **conditions: object) -> Signature:
    """A row for a failure at ``steps`` (plus any ``conditions``) that no symptom row explained."""
    return Signature(cause=cause, hint=hint, action=action, step_regex=_steps(*steps), **conditions)


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
        cause="api_key_rejected",
        error_class="key_not_valid",
        hint="the auth service says is_valid false for the monitoring key (revoked, expired, wrong service)",
        action="Validate the key with service_id 'platform'; check revocation (auth caches results 5 min).",
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
        cause="artifact_missing_after_upload",
        error_class="artifact_missing",
        hint="an object just written through the same route is not found: the route works, the store lost it",
        action="Check the MLflow artifact destination (bucket, prefix, lifecycle rules) and that every "
        "MLflow task writes to the same store.",
    ),
    Signature(
        cause="artifact_listing_incomplete",
        error_class="artifact_not_listed",
        hint="the upload succeeded, but listing its folder does not show the object",
        action="Check the artifact store's consistency and that every MLflow task uses the same destination.",
    ),
    Signature(
        cause="model_registry_unavailable",
        error_class="model_registry_not_served",
        hint="experiments/search works through the same proxy and key, but registered-models/search "
        "answers 404: MLflow serves no model registry, or the proxy routes only part of its API",
        action="Run MLflow with a database --backend-store-uri (the registry needs one) and check that "
        "the proxy routes every /api/2.0/mlflow/* path.",
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
    Signature(
        cause="synthetic_experiment_deleted",
        error_class="experiment_deleted",
        hint="the experiment synthmon writes to was deleted, and it is not synthmon's to restore",
        action="Restore the experiment in MLflow, or give synthmon another experiment_name.",
    ),
    # --- the monitor's own failures (ERROR): never blamed on the platform ------------------------
    Signature(
        cause="probe_deadline_exceeded",
        status=Status.ERROR,
        error_class="deadline_exceeded",
        hint="the run outlived its timeout and was cut before any step could report the slow one",
        action="Read which step earlier runs spent their time in; raise the probe's timeout if too short.",
    ),
    Signature(
        cause="monitor_subprocess_crashed",
        status=Status.ERROR,
        error_class_regex=r"^(subprocess_crash|IsolationCrash)$",
        hint="the subprocess running the check died without an answer (memory, a missing package, a crash)",
        action="Read the monitor's log line for this run (the subprocess's last stderr lines).",
    ),
    Signature(
        cause="monitor_out_of_resources",
        error_class="local_resource_error",
        hint="the monitor's own host ran out of file descriptors or memory: the platform was not checked",
        action="Check the synthmon container's memory limit and open-files limit (ulimit -n); restart it.",
    ),
    Signature(
        cause="monitor_error",
        status=Status.ERROR,
        hint="the monitor itself could not run this check (its environment or a bug), not the platform",
        action="Read the step's message and the monitor's logs; the platform was not checked.",
    ),
    # --- contract §6: unmistakable bodies ------------------------------------------------------
    Signature(
        cause="artifacts_disabled",
        body_regex=r"Artifact serving is disabled|ARTIFACTS_DISABLED",
        hint="MLflow runs without --serve-artifacts (artifact routes answer 503)",
        action="Restart the MLflow task with --serve-artifacts and an --artifacts-destination.",
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
        # The registry's wording; the auth service's own 503 (its /ready) is not this.
        body_regex=r"auth(entication)? (service|upstream)",
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
    # --- routing isolation: a path that must not exist answered (any status but 404 and 5xx) ------
    _stage(
        "auth_alb_serves_mlflow",
        ("isolation_auth_has_no_mlflow",),
        "the auth load balancer answers /mlflow/: its listener rules route MLflow paths (isolation broken)",
        "Remove the MLflow path rule from the auth ALB's listener; only the registry ALB may route /mlflow*.",
        http_status_min=100,
        http_status_max=499,
    ),
    _stage(
        "registry_alb_serves_auth_api",
        ("isolation_registry_has_no_auth_api",),
        "the registry load balancer answers the auth API's path (isolation broken)",
        "Remove the /api/v1/keys route from the registry ALB and service; only the auth ALB may serve it.",
        http_status_min=100,
        http_status_max=499,
    ),
    # --- contract §6: routes and statuses ------------------------------------------------------
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
        cause="artifact_route_not_deployed",
        http_status=404,
        error_class="artifact_upload_failed",
        hint=(
            "the model's artifact upload answered 404 although MLflow's API worked moments before "
            "(experiment and run created): the artifact route is missing, not MLflow"
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
        cause="artifact_store_error",
        http_status=500,
        error_class="artifact_upload_failed",
        hint="MLflow could not write the model's artifacts (S3 permissions or bucket missing)",
        action="Check the MLflow task role's S3 permissions and that the artifact bucket exists.",
    ),
    Signature(
        cause="mlflow_unreachable",
        http_status=502,
        path_regex=_MLFLOW_ANY,
        hint="the registry cannot connect to MLflow (task down or wrong upstream address)",
        action="Check the MLflow ECS task and the registry's MLflow upstream URL.",
    ),
    Signature(
        cause="mlflow_timeout",
        http_status=504,
        path_regex=_MLFLOW_ANY,
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
    # --- what the failing step talks to (see the step groups above) ------------------------------
    _stage(
        "certificate_invalid",
        ("cert_auth", "cert_registry"),
        "the load balancer's certificate does not verify (expired, untrusted chain, or wrong host name)",
        "Check the listener's certificate in ACM: expiry, chain and the names it covers.",
        error_class="tls_error",
    ),
    _stage(
        "auth_service_unreachable",
        AUTH_STEPS,
        "the monitor cannot reach the auth service's load balancer (DNS, refused, TLS or reset: see the "
        "error class)",
        "Check the auth ALB's DNS record and listeners, its security group, and that the service runs.",
        error_class_regex=_UNREACHABLE,
    ),
    _stage(
        "registry_unreachable",
        REGISTRY_STEPS,
        "the monitor cannot reach the registry's load balancer (DNS, refused, TLS or reset: see the "
        "error class)",
        "Check the registry ALB's DNS record and listeners, its security group, and that the service runs.",
        error_class_regex=_UNREACHABLE,
    ),
    _stage(
        "auth_service_slow",
        AUTH_STEPS,
        "the auth service did not answer within the step's time budget",
        "Check the auth service's latency and its database and Redis.",
        error_class_regex=_SLOW,
    ),
    _stage(
        "registry_slow",
        (*REGISTRY_HEALTH_STEPS, "isolation_registry_has_no_auth_api", "cert_registry"),
        "the registry API did not answer within the step's time budget",
        "Check the registry service's latency and its dependencies (database, Redis).",
        error_class_regex=_SLOW,
    ),
    _stage(
        "artifact_transfer_slow",
        ARTIFACT_STEPS,
        "an artifact transfer did not finish within the step's time budget",
        "Check MLflow's artifact throughput and the S3 latency behind it.",
        error_class_regex=_SLOW,
    ),
    _stage(
        "mlflow_slow",
        ("mlflow_ui", *MLFLOW_API_STEPS, *REGISTRATION_STEPS),
        "MLflow (through the proxy) did not answer within the step's time budget",
        "Check MLflow's latency, its database and its worker count.",
        error_class_regex=_SLOW,
    ),
    Signature(
        cause="mlflow_api_not_routed",
        http_status=404,
        path_regex=_MLFLOW_API,
        hint="MLflow's REST API answers 404 through the proxy: the route or MLflow's prefix layout is wrong",
        action="Check the proxy's /api/mlflow/* route and the path layout MLflow serves (static prefix).",
    ),
    Signature(
        cause="mlflow_api_failing",
        http_status_min=400,
        http_status_max=599,
        path_regex=_MLFLOW_API,
        hint="MLflow's REST API answers with an error through the proxy",
        action="Read the body excerpt and MLflow's logs (its backend database first).",
    ),
    _stage(
        "auth_service_unhealthy",
        # An isolation check answered 5xx: the service behind that ALB failed, whatever the path.
        (*AUTH_HEALTH_STEPS, "isolation_auth_has_no_mlflow"),
        "the auth service answers, but its health check does not pass",
        "Read the body excerpt (the failing dependency) and the auth service's logs.",
    ),
    _stage(
        "auth_not_ready",
        ("ready",),
        "the auth service is up but not ready: its database or Redis is down",
        "Check the auth service's database and Redis (the body's checks say which).",
    ),
    _stage(
        "auth_validation_failing",
        AUTH_VALIDATE_STEPS,
        "the auth service answers, but key validation does not work as the contract says",
        "Read the body excerpt and the auth service's logs (its key store and database).",
    ),
    _stage(
        "registry_unhealthy",
        (*REGISTRY_HEALTH_STEPS, "isolation_registry_has_no_auth_api"),
        "the registry API answers, but its health check does not pass",
        "Read the body excerpt (the failing dependency: database, Redis, MLflow) and the registry's logs.",
    ),
    _stage(
        "mlflow_ui_unavailable",
        ("mlflow_ui",),
        "the MLflow UI behind the registry ALB does not answer 200",
        "Check the registry ALB's /mlflow* rule and the MLflow task's static prefix.",
    ),
    _stage(
        "mlflow_api_failing",
        MLFLOW_API_STEPS,
        "MLflow's API, reached through the proxy, does not answer as MLflow does",
        "Read the step's message and body excerpt, then MLflow's and the proxy's logs.",
    ),
    Signature(
        cause="artifact_upload_rejected",
        error_class="artifact_upload_failed",
        hint="the model's artifact upload failed although MLflow's API worked moments before",
        action="Read the step's message; check the proxy's artifact route and its body size limit.",
    ),
    _stage(
        "artifact_upload_rejected",
        ("upload",),
        "the artifact route refuses the upload (a body size limit, a WAF rule, or the route's own error)",
        "Read the body excerpt; check the proxy's body size limit and the artifact route's logs.",
    ),
    _stage(
        "artifact_list_failing",
        ("list",),
        "the upload worked, but listing the folder fails",
        "Read the body excerpt and MLflow's logs for the list call.",
    ),
    _stage(
        "artifact_download_failing",
        ("download", "verify"),
        "the upload worked, but reading the object back fails",
        "Read the body excerpt and MLflow's logs for the download.",
    ),
    _stage(
        "artifact_delete_failing",
        ("delete",),
        "the round trip worked, but deleting the synthetic objects fails: they pile up in the store",
        "Check that the proxy allows DELETE on artifact routes and MLflow's permissions on the bucket.",
    ),
    _stage(
        "model_logging_failing",
        ("log_model",),
        "the experiment was reached, but creating the run or logging the model fails",
        "Read the step's message (the MLflow call that failed) and MLflow's logs.",
    ),
    _stage(
        "model_registration_failing",
        ("register", "wait_ready"),
        "the model was logged, but registering a version of it fails",
        "Read the step's message and MLflow's logs (the model registry's database).",
    ),
    _stage(
        "model_download_failing",
        ("load",),
        "the version was registered, but downloading the model fails",
        "Read the step's message; check the artifact route for downloads and the store behind it.",
    ),
    _stage(
        "model_prediction_failing",
        ("predict",),
        "the model downloaded, but it fails to predict (incompatible or damaged model files)",
        "Compare the model's files in the store with what was logged; check the scikit-learn versions.",
    ),
    _stage(
        "synthetic_cleanup_failing",
        ("cleanup",),
        "the registration worked, but deleting its synthetic version, model and run fails",
        "Read the step's message; synthetic objects pile up until deletes work again.",
    ),
    # --- generic: how a request failed, when nothing above says what is broken -------------------
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
        cause="connection_closed",
        error_class_regex=r"^(connection_closed|broken_pipe)$",
        hint="the target closed the connection before or while answering, or while the request was "
        "sent (a crashing backend, an idle timeout shorter than the request, a proxy cutting bodies)",
        action="Check the target's and the ALB's logs at that time and the idle timeouts along the path.",
    ),
    Signature(
        cause="timeout",
        message_regex=r"timeout|timed out",
        hint="the target did not answer within the step's time budget",
        action="Check the target's latency and what it waits on (database, upstream).",
    ),
    Signature(
        cause="redirect_loop",
        error_class="too_many_redirects",
        hint="following redirects never reached an answer (a redirect loop between listeners or apps)",
        action="Check the target's listener rules and the app's own redirects for a loop.",
    ),
    Signature(
        cause="transport_error",
        error_class_regex=r"^(protocol_error|read_error|write_error|transport_error|unsupported_protocol)$",
        hint="the connection failed mid-exchange (a malformed or cut answer, not an HTTP status)",
        action="Check the target's logs and anything between (ALB, proxy) for cut connections.",
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
    "artifact_missing_after_upload": "Artifact store loses written objects",
    "artifact_listing_incomplete": "Artifact listing misses written objects",
    "model_registry_unavailable": "MLflow model registry not served",
    "model_prediction_mismatch": "Registered model predicts differently from the logged one",
    "model_version_not_ready": "Model version never became ready",
    "synthetic_experiment_deleted": "Synthetic experiment deleted",
    "probe_deadline_exceeded": "Probe run cut at its deadline",
    "monitor_subprocess_crashed": "Monitor's check subprocess crashed",
    "monitor_error": "Monitor could not run the check",
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
    "auth_alb_serves_mlflow": "Auth load balancer serves MLflow paths",
    "registry_alb_serves_auth_api": "Registry load balancer serves the auth API",
    "mlflow_unreachable": "Registry cannot reach MLflow",
    "mlflow_timeout": "MLflow slower than the proxy's timeout",
    "rate_limited": "Monitoring key rate-limited",
    "certificate_invalid": "Load balancer certificate does not verify",
    "auth_service_unreachable": "Auth service unreachable",
    "registry_unreachable": "Registry unreachable",
    "auth_service_slow": "Auth service too slow",
    "registry_slow": "Registry API too slow",
    "artifact_transfer_slow": "Artifact transfers too slow",
    "mlflow_slow": "MLflow too slow",
    "mlflow_api_not_routed": "MLflow API not routed through the proxy",
    "mlflow_api_failing": "MLflow API failing",
    "auth_service_unhealthy": "Auth service unhealthy",
    "auth_not_ready": "Auth service not ready (database or Redis)",
    "auth_validation_failing": "Auth service cannot validate keys",
    "registry_unhealthy": "Registry API unhealthy",
    "mlflow_ui_unavailable": "MLflow UI unavailable",
    "artifact_upload_rejected": "Artifact uploads rejected",
    "artifact_list_failing": "Artifact listing failing",
    "artifact_download_failing": "Artifact downloads failing",
    "artifact_delete_failing": "Artifact deletes failing",
    "model_logging_failing": "Model logging failing",
    "model_registration_failing": "Model registration failing",
    "model_download_failing": "Model download failing",
    "model_prediction_failing": "Registered model fails to predict",
    "synthetic_cleanup_failing": "Synthetic model cleanup failing",
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
    "connection_closed": "Connection closed by the target",
    "monitor_out_of_resources": "Monitor out of file descriptors or memory",
    "timeout": "No answer in time",
    "redirect_loop": "Redirect loop",
    "transport_error": "Connection failed mid-exchange",
    "unexpected_body": "Unexpected response body",
    "body_too_large": "Response body too large",
    # Computed, not matched by a signature (COMPUTED_CAUSES).
    "latency_regression": "Latency regression",
    "error_budget_burn": "Error budget burning too fast",
}

#: The cause the latency baselines (:mod:`monitor.baselines`) give a step that took several times
#: its usual latency several runs in a row. No signature matches it: it is judged from the stored
#: history, not read from one answer, and the step's message names the baseline in words.
LATENCY_REGRESSION = "latency_regression"

#: The diagnosis a latency regression carries (the step's message says by how much).
LATENCY_REGRESSION_DIAGNOSIS = Diagnosis(
    cause=LATENCY_REGRESSION,
    hint="several runs in a row took several times the usual latency of this step (its baseline)",
    action=(
        "Check what changed on this path (a deploy, load, a slower dependency or storage); a new "
        "normal becomes the baseline once it fills the baseline window."
    ),
)

#: An SLO spending its error budget too fast (:mod:`monitor.slo`).
ERROR_BUDGET_BURN = "error_budget_burn"

#: Causes the monitor computes (from history, from budgets) rather than matches on a failing step:
#: no signature row gives them.
COMPUTED_CAUSES: frozenset[str] = frozenset({LATENCY_REGRESSION, ERROR_BUDGET_BURN})


#: Causes of the monitor's own failures (ERROR steps): nothing in the platform is known to be broken.
MONITOR_CAUSES: frozenset[str] = frozenset(
    {"probe_deadline_exceeded", "monitor_subprocess_crashed", "monitor_error", "monitor_out_of_resources"}
)

#: Causes that say how a request failed, not what in the platform is broken, and the monitor's own
#: causes: two probes sharing one of these may be two unrelated outages (or no outage at all), so
#: they never correlate by cause alone. A failure of a built-in probe reaches one of these only when
#: no symptom and no step of it says more (tests/probes/test_probes_diagnosis.py counts those).
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
        "connection_closed",
        "timeout",
        "redirect_loop",
        "transport_error",
        "unexpected_body",
        "body_too_large",
        *MONITOR_CAUSES,
        # Slower than usual, or a budget spent too fast, says how a path behaves, not what in it is
        # broken: two probes slowing down (two SLOs burning) at once correlate through depends_on,
        # not through the cause alone.
        *COMPUTED_CAUSES,
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
