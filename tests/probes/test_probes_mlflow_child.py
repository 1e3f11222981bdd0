"""The MLflow child's step judgement: the platform's failures are FAIL, the monitor's own are ERROR."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable

import pytest
import requests

from monitor.diagnosis import diagnose
from probes.base import StepResult
from probes.support.masking import MASK, MaskingStream, SecretMasker
from probes.support.mlflow_child import LocalFailure, describe_exception, timed_step

KEY = "hk_test_" + "k" * 32


class _FakeMlflowException(Exception):
    """Stands in for mlflow.exceptions.MlflowException (the test process never imports mlflow)."""


def _raises(exc: BaseException) -> Callable[[], None]:
    def fn() -> None:
        raise exc

    return fn


CASES: dict[str, tuple[BaseException, bool, str, str]] = {
    # name: (exception, reads_platform_data, status, error_class)
    "sklearn_missing": (
        ModuleNotFoundError("No module named 'sklearn'"),
        False,
        "ERROR",
        "ModuleNotFoundError",
    ),
    "disk_full": (OSError(errno.ENOSPC, "No space left on device"), False, "ERROR", "OSError"),
    "temp_dir": (LocalFailure("cannot create a temporary directory"), True, "ERROR", "LocalFailure"),
    "monitor_bug": (ValueError("Seed must be between 0 and 2**32 - 1"), False, "ERROR", "ValueError"),
    "module_missing_while_loading": (ImportError("cannot import name 'x'"), True, "ERROR", "ImportError"),
    "connection_refused": (
        requests.ConnectionError("Failed to establish a new connection: [Errno 111] Connection refused"),
        False,
        "FAIL",
        "connect_error",
    ),
    "read_timeout": (TimeoutError("timed out"), False, "FAIL", "timeout"),
    "mlflow_rest_error": (
        _FakeMlflowException("API request failed with error code 503 != 200"),
        False,
        "FAIL",
        "_FakeMlflowException",
    ),
    "corrupted_model_file": (ValueError("could not parse MLmodel"), True, "FAIL", "ValueError"),
}


@pytest.mark.parametrize("case", sorted(CASES), ids=sorted(CASES))
def test_step_exception_is_judged_platform_or_monitor(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform exception makes a FAIL step; a local one (package, disk, bug) makes an ERROR step."""
    fake = types.ModuleType("mlflow.exceptions")
    fake.MlflowException = _FakeMlflowException  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlflow.exceptions", fake)
    exc, reads_platform_data, status, error_class = CASES[case]
    step, value = timed_step("s", _raises(exc), [KEY], reads_platform_data=reads_platform_data)
    assert (step["status"], step["error_class"]) == (status, error_class)
    assert value is None


def test_monitor_error_message_is_masked() -> None:
    """An ERROR step's message names the exception and never shows the key."""
    step, _ = timed_step("train", _raises(RuntimeError(f"bad token {KEY}")), [KEY])
    assert step["status"] == "ERROR"
    assert KEY not in step["message"]
    assert "RuntimeError" in step["message"]


@pytest.mark.parametrize(("local", "status"), [(False, "FAIL"), (True, "ERROR")], ids=["platform", "local"])
def test_step_past_its_timeout_is_abandoned_and_reported(local: bool, status: str) -> None:
    """A step still blocked at its timeout is reported then (FAIL timeout; ERROR for a local step)."""
    release = threading.Event()
    start = time.monotonic()
    try:
        step, value = timed_step("log_model", lambda: release.wait(60), [KEY], local=local, timeout_s=0.3)
    finally:
        release.set()  # lets the abandoned worker finish
    assert time.monotonic() - start < 5
    assert step["status"] == status
    assert "timeout" in step["message"]
    if not local:
        assert step["error_class"] == "timeout"
    assert value is None


def test_step_within_its_timeout_returns_its_value() -> None:
    """A step that finishes inside its timeout passes with its value; its exceptions still count."""
    step, value = timed_step("s", lambda: {"message": "ok"}, [KEY], timeout_s=10)
    assert (step["status"], value) == ("PASS", {"message": "ok"})
    step, _ = timed_step("s", _raises(TimeoutError("read timed out")), [KEY], timeout_s=10)
    assert (step["status"], step["error_class"]) == ("FAIL", "timeout")


def test_describe_exception_reads_the_seed_404() -> None:
    """The MLflow client's upload error yields status 404 and the artifact path, which diagnosis maps."""
    import requests

    response = requests.Response()
    response.status_code = 404
    response.url = "https://registry.example/api/mlflow/api/2.0/mlflow-artifacts/artifacts/1/m/model.pkl"
    response._content = b"Not Found"
    exc = requests.HTTPError(f"404 Client Error: Not Found for url: {response.url}", response=response)
    info = describe_exception(exc, [])
    assert (info["http_status"], info["path"]) == (
        404,
        "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/1/m/model.pkl",
    )
    step = StepResult.from_dict({"name": "log_model", "status": "FAIL", **info})
    assert diagnose(step).cause == "artifact_route_not_deployed"  # type: ignore[union-attr]


def test_child_output_masks_the_key() -> None:
    """Exception text and everything written to the child's stderr have the key replaced."""
    import io

    key = "hk_test_" + "k" * 32
    info = describe_exception(RuntimeError(f"failed with token {key}"), [key])
    assert key not in json.dumps(info)
    sink = io.StringIO()
    MaskingStream(sink, SecretMasker([key])).write(f"Authorization: Bearer {key}\n")
    assert key not in sink.getvalue()
    assert SecretMasker([key]).mask(key) == MASK


def test_daemon_side_never_imports_mlflow() -> None:
    """Importing the daemon, the CLI and every probe module leaves mlflow unimported."""
    code = (
        "import sys, monitor.cli, monitor.app, probes, probes.registration, probes.mlflow_api;"
        "sys.exit(1 if any(m == 'mlflow' or m.startswith('mlflow.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=120).returncode == 0
