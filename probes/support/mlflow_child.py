"""Subprocess side of the MLflow client checks. Runs only in a child process, never in the daemon.

Entry points are called by :func:`probes.support.isolation.run_isolated`
(``"probes.support.mlflow_child:NAME"``) with a JSON payload on stdin that may carry the API key.
Rules, because the key travels here:

- the key goes into this process's own environment as ``MLFLOW_TRACKING_TOKEN`` (which the MLflow
  client sends as ``Authorization: Bearer``), never into argv;
- everything this process writes to stderr (its logs, MLflow's logs, tracebacks) passes through a
  masking stream, and every message returned is masked too.

mlflow is imported inside the functions: importing this module stays cheap.

A step's exception is judged before it is reported (:func:`is_platform_error`): an MLflow REST
error, an HTTP or connection error or a timeout is the platform's (FAIL, pages); anything else --
a missing package, a full disk or temp dir, a bug in the monitor -- is the monitor's own (ERROR,
never blamed on the platform).
"""

from __future__ import annotations

import errno
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from probes.support.budget import budget_left
from probes.support.masking import MaskingStream, SecretMasker

#: How much of an error body or exception text is returned (diagnosis matches on it).
EXCERPT_CHARS = 300
#: A child's own timeout ends this long before the parent's kill, to leave time for its answer.
_ANSWER_MARGIN_S = 0.5


def configure_client_env(payload: dict[str, Any]) -> None:
    """Environment for the MLflow client in this process: token, retries, timeout, no telemetry.

    Retries are off (``max_retries`` 0 by default) so that a 503 or 404 surfaces as what it is
    within the probe's deadline, instead of minutes of backoff.
    """
    key = str(payload.get("api_key") or "")
    if key:
        os.environ["MLFLOW_TRACKING_TOKEN"] = key
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(int(payload.get("max_retries", 0)))
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(payload.get("request_timeout_s", 30)))
    # No telemetry, no git lookups: the child talks to the tracking server and nothing else.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def prepare_environment(payload: dict[str, Any]) -> list[str]:
    """Set up a ``run_isolated`` child: masked stdout/stderr, then :func:`configure_client_env`.

    Returns the secrets to mask.
    """
    key = str(payload.get("api_key") or "")
    secrets = [key] if key else []
    stream = MaskingStream(sys.stderr, SecretMasker(secrets))
    # Duck-typed text stream; probes.support.isolation restores the real stdout after the call.
    sys.stderr = stream
    sys.stdout = stream
    configure_client_env(payload)
    return secrets


_STATUS_PATTERNS = (
    re.compile(r"too many (\d{3}) error responses"),
    re.compile(r"\b(\d{3}) (?:Client|Server) Error\b"),
    re.compile(r"Response code (\d{3})"),
    re.compile(r"status code (\d{3})", re.IGNORECASE),
)
_URL_PATTERN = re.compile(r"(?:for url: |url: |with url )(\S+)|(https?://\S+)")

#: Statuses the MLflow client retries; its exception then says only "too many 503 error responses".
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


def fetch_evidence(url: str, key: str, timeout_s: float = 5.0) -> tuple[str | None, str | None]:
    """One side-effect-free GET of ``url`` with the key: ``(content_type, body excerpt)``.

    The MLflow client drops the body of a retried status (429/5xx), and the body is what tells
    "Artifact serving is disabled" from an ALB's HTML 503. Re-asking with a GET recovers it.
    Any failure here just means no extra evidence.
    """
    import httpx

    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout_s)
    except httpx.HTTPError:
        return None, None
    content_type = response.headers.get("content-type", "").split(";")[0].strip() or None
    return content_type, " ".join(response.text[: EXCERPT_CHARS * 4].split())[:EXCERPT_CHARS]


def describe_exception(exc: BaseException, secrets: list[str]) -> dict[str, Any]:
    """The facts diagnosis matches on, pulled from an MLflow/requests exception.

    ``http_status``, URL ``path`` (no query) and a ``body_excerpt`` when they can be found, else
    None; ``error_class`` is the exception's class name; ``message`` is masked and one line.
    """
    text = SecretMasker(secrets).mask(" ".join(str(exc).split()))
    status: int | None = None
    path: str | None = None
    body: str | None = None
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None) is not None:
        status = int(response.status_code)
        url = getattr(response, "url", None)
        if url:
            path = urlparse(str(url)).path
        try:
            body = SecretMasker(secrets).mask(" ".join(str(response.text).split())[:EXCERPT_CHARS])
        except Exception:
            body = None
    get_status = getattr(exc, "get_http_status_code", None)
    if status is None and callable(get_status):
        code = get_status()
        # MlflowException defaults to 500 for errors it did not get from HTTP; only trust
        # a code that the text confirms, or one that is not the default.
        if isinstance(code, int) and (code != 500 or "500" in text):
            status = code
    if status is None:
        for pattern in _STATUS_PATTERNS:
            m = pattern.search(text)
            if m:
                status = int(m.group(1))
                break
    url_found: str | None = None
    m = _URL_PATTERN.search(text)
    if m:
        url_found = (m.group(1) or m.group(2)).rstrip(".,;:)'\"")
        if path is None:
            path = urlparse(url_found).path or None
    content_type: str | None = None
    if body is None and status in _RETRIED_STATUSES and url_found and secrets:
        parts = urlparse(url_found)
        content_type, body = fetch_evidence(f"{parts.scheme}://{parts.netloc}{parts.path}", secrets[0])
        body = SecretMasker(secrets).mask(body) if body is not None else None
    if body is None:
        body = text[:EXCERPT_CHARS]
    if status is not None and isinstance(exc, ConnectionError | TimeoutError):
        status = None
    error_class = type(exc).__name__
    lowered = text.lower()
    if status is None:
        if "timed out" in lowered or "timeout" in lowered:
            error_class = "timeout"
        elif "connection refused" in lowered or "failed to establish a new connection" in lowered:
            error_class = "connect_error"
        elif "connection reset" in lowered or "connection aborted" in lowered:
            error_class = "connection_reset"
    return {
        "http_status": status,
        "path": path,
        "body_excerpt": body,
        "content_type": content_type,
        "error_class": error_class,
        "message": text[:1000],
    }


class LocalFailure(Exception):
    """The monitor's own environment failed (temp dir, disk, set-up): never the platform's fault."""


class StepTimeout(TimeoutError):
    """A step still ran when its share of the run's budget was spent (it was abandoned)."""

    def __init__(self, name: str, timeout_s: float) -> None:
        super().__init__(f"{name} still running after {timeout_s:.1f}s (timeout: the run's budget is spent)")


def set_request_timeout(seconds: float) -> None:
    """Cap each MLflow client HTTP request at ``seconds`` (whole, at least 1).

    The client reads ``MLFLOW_HTTP_REQUEST_TIMEOUT`` on every request, so lowering it before a
    step makes a hung request end within what is left of the run's budget.
    """
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(seconds)))


def call_with_timeout(name: str, fn: Callable[[], Any], timeout_s: float) -> Any:
    """``fn()``, or :class:`StepTimeout` when it has not returned after ``timeout_s``.

    ``fn`` runs in a daemon thread that is abandoned at the timeout: a blocking client call cannot
    be interrupted, but the step can stop waiting for it and report. The process is short-lived
    (the isolation parent kills its group once it has the answer), so the thread dies with it.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread, raised there
            outcome["error"] = exc

    worker = threading.Thread(target=target, name=f"synthmon-{name}", daemon=True)
    worker.start()
    worker.join(max(0.0, timeout_s))
    if worker.is_alive():
        raise StepTimeout(name, timeout_s)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


#: errno values of an OSError that this host produced (disk full, read-only, no permission, no
#: file descriptors), whatever step raised it.
_LOCAL_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOMEM,
    }
)
#: Exception classes that mean "the platform answered wrongly or not at all", by module. Looked up
#: in ``sys.modules`` only: a module never imported cannot have raised its exception, and importing
#: it here would make judging an exception slow or fail.
_PLATFORM_EXCEPTIONS = (
    ("mlflow.exceptions", "MlflowException"),
    ("requests", "RequestException"),
    ("urllib3.exceptions", "HTTPError"),
    ("httpx", "HTTPError"),
)


def _platform_exception_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name, attr in _PLATFORM_EXCEPTIONS:
        cls = getattr(sys.modules.get(module_name), attr, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def is_platform_error(exc: BaseException, *, reads_platform_data: bool = False) -> bool:
    """True when ``exc`` says the platform failed; False when the monitor itself did.

    Platform: MLflow REST errors, requests/urllib3/httpx errors, connection errors, timeouts.
    Monitor: a missing package, a local disk or temp-dir error, memory, :class:`LocalFailure`, and
    any other exception (a bug here). With ``reads_platform_data`` (the step parses what the
    platform sent, e.g. the downloaded model) an otherwise unknown exception is the platform's:
    files that do not parse are corrupted artifacts. A missing package or a full disk stays ours.
    """
    if isinstance(exc, LocalFailure | ImportError | MemoryError | RecursionError):
        return False
    if isinstance(exc, OSError) and exc.errno in _LOCAL_ERRNOS:
        return False
    if isinstance(exc, _platform_exception_types()):
        return True
    return reads_platform_data


def monitor_error(name: str, exc: BaseException, secrets: list[str], duration_s: float) -> dict[str, Any]:
    """A StepResult-shaped ERROR: the monitor could not run step ``name`` (``exc`` is its own)."""
    text = SecretMasker(secrets).mask(" ".join(str(exc).split()))
    return {
        "name": name,
        "status": "ERROR",
        "duration_s": duration_s,
        "error_class": type(exc).__name__,
        "message": f"the monitor could not run {name}: {type(exc).__name__}: {text}"[:1000],
    }


def timed_step(
    name: str,
    fn: Callable[[], Any],
    secrets: list[str],
    *,
    reads_platform_data: bool = False,
    local: bool = False,
    timeout_s: float | None = None,
) -> tuple[dict[str, Any], Any]:
    """Run ``fn`` as step ``name``: a StepResult-shaped dict and fn's value (None unless PASS).

    PASS when ``fn`` returns; FAIL with the HTTP facts when it raises a platform error; ERROR when
    it raises anything else (see :func:`is_platform_error`), or anything at all when the step is
    ``local`` (it talks to nothing but this host). With ``timeout_s`` the step is abandoned at
    that point and reported as a FAIL ``timeout`` (ERROR when ``local``).
    """
    start = time.monotonic()
    try:
        value = fn() if timeout_s is None else call_with_timeout(name, fn, timeout_s)
    except Exception as exc:
        duration = time.monotonic() - start
        if local or not is_platform_error(exc, reads_platform_data=reads_platform_data):
            return monitor_error(name, exc, secrets, duration), None
        info = describe_exception(exc, secrets)
        return {"name": name, "status": "FAIL", "duration_s": duration, **info}, None
    return {"name": name, "status": "PASS", "duration_s": time.monotonic() - start}, value


def search_experiments(payload: dict[str, Any]) -> dict[str, Any]:
    """The seed's check #10: the MLflow client's own ``search_experiments(max_results=1)``.

    Payload: ``tracking_uri``, ``api_key``, ``step`` (the step name), optional ``max_retries``,
    ``request_timeout_s``, ``budget_s`` (the parent's deadline for this child). Returns one
    StepResult-shaped dict.
    """
    secrets = prepare_environment(payload)
    name = str(payload.get("step") or "client_search")
    timeout_s: float | None = None
    if payload.get("budget_s"):
        # What the parent's kill leaves once getting this child is paid, less a moment to answer:
        # a hung server then reads "client_search still running after N s" from the child itself.
        timeout_s = budget_left(payload, float(payload["budget_s"]) - _ANSWER_MARGIN_S)
        set_request_timeout(min(float(payload.get("request_timeout_s", 30)), timeout_s))

    def call() -> int:
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(str(payload["tracking_uri"]))
        return len(MlflowClient().search_experiments(max_results=1))

    step, count = timed_step(name, call, secrets, timeout_s=timeout_s)
    if step["status"] == "PASS":
        step["message"] = f"MLflow client search_experiments(max_results=1) returned {count} experiment(s)"
        step["measurements"] = {"experiments_returned": float(count)}
    return step
