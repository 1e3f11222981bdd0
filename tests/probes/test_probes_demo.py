"""`synthmon demo` end to end: sandbox up, daemon running, results printed, Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from probes_helpers import DEFAULT_CONFIG, REPO

from monitor.demo import format_result
from monitor.results import ProbeResult
from probes.base import Diagnosis, Status, StepResult


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_format_result_names_failing_step_and_cause() -> None:
    """A result line shows probe, status, duration, the failing step's message and its cause."""
    from datetime import UTC, datetime

    step = StepResult(
        name="upload",
        status=Status.FAIL,
        message="PUT /x answered 404, expected 200",
        diagnosis=Diagnosis(cause="artifact_route_not_deployed", hint="h"),
    )
    result = ProbeResult(
        probe="artifact_roundtrip",
        kind="artifact_roundtrip",
        run_id="r",
        started_at=datetime(2026, 7, 1, tzinfo=UTC),
        duration_s=0.25,
        status=Status.FAIL,
        steps=(step,),
    )
    line = format_result(result)
    assert "artifact_roundtrip" in line
    assert "FAIL" in line
    assert "upload: PUT /x answered 404" in line
    assert line.endswith("[artifact_route_not_deployed]")


@pytest.mark.sandbox
def test_demo_runs_probes_against_the_sandbox_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The demo prints the metrics URL and probe lines (the seed fault shows), and SIGINT stops all."""
    port = _free_port()
    env = {**os.environ, "SYNTHMON_LISTEN": f"127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"}
    env.pop("SYNTHMON_API_KEY", None)  # the demo must export the sandbox's own key
    argv = [
        sys.executable,
        "-m",
        "monitor",
        "demo",
        "--config",
        str(DEFAULT_CONFIG),
        "--workdir",
        str(tmp_path),
    ]
    argv += ["--auth-port", "0", "--registry-port", "0", "--fault", "artifacts-404"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    lines: list[str] = []
    seen: dict[str, str] = {}
    wanted = {"auth", "alb_health", "mlflow_api", "artifact_roundtrip"}
    try:
        assert proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not wanted <= set(seen):
            if not selector.select(timeout=1.0):
                assert proc.poll() is None, "demo exited early: " + "".join(lines)
                continue
            line = proc.stdout.readline()
            if not line:
                break  # the demo exited: the assertion below shows its stderr
            lines.append(line)
            parts = line.split()
            if len(parts) >= 3 and parts[1] in wanted | {"registration"}:
                seen.setdefault(parts[1], line)
        if not wanted <= set(seen):
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail("demo did not show every probe:\n" + "".join(lines) + "\nstderr:\n" + err[-3000:])
        assert any(f"http://127.0.0.1:{port}/metrics" in line for line in lines)
        assert " FAIL " in seen["artifact_roundtrip"]
        assert "[artifact_route_not_deployed]" in seen["artifact_roundtrip"]
        assert " PASS " in seen["auth"]
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert metrics.status_code == 200
        assert "synthmon_" in metrics.text
        state = json.loads((tmp_path / "sandbox" / "sandbox.json").read_text())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
        psutil.pid_exists(state[k]) for k in ("platform_pid", "mlflow_pid")
    ):
        time.sleep(0.2)
    assert not any(psutil.pid_exists(state[k]) for k in ("platform_pid", "mlflow_pid"))
