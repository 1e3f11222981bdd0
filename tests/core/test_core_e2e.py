"""End to end: `synthmon run` and `synthmon once` as real subprocesses against a loopback HTTP app."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.core.conftest import FAKE_KEY, REPO
from tests.core.target import Target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(target: Target, port: int, store: Path) -> str:
    # The store is pinned to the test's tmp dir so a daemon wired to history never writes ./var.
    return f"""\
environment: e2e
listen: 127.0.0.1:{port}
store:
  url: sqlite:///{store}
secrets:
  api_key: ${{SYNTHMON_API_KEY}}
probes:
  - name: health
    kind: http
    interval: 1s
    timeout: 500ms
    options:
      url: {target.url}/health
      bearer_secret: api_key
      json_equals: {{status: healthy}}
  - name: root
    kind: http
    interval: 30s
    timeout: 2s
    options:
      url: {target.url}/
"""


def _env() -> dict[str, str]:
    return {**os.environ, "SYNTHMON_API_KEY": FAKE_KEY, "PYTHONPATH": str(REPO)}


def _until(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll until ``predicate`` holds. A deadline, not a wait: generous because the first condition
    includes the daemon's start, which takes many seconds on a loaded 2-core machine (two workers)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.05)


def _metric(url: str, name: str, **labels: str) -> float | None:
    try:
        text = httpx.get(url + "/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


@pytest.fixture
def config_file(tmp_path: Path, target: Target) -> tuple[Path, str]:
    """A config pointing at the target; yields its path and the daemon's base URL."""
    port = _free_port()
    path = tmp_path / "config.yaml"
    path.write_text(_config(target, port, tmp_path / "store.db"))
    return path, f"http://127.0.0.1:{port}"


def test_run_daemon_reports_outage_and_drains_on_sigterm(
    config_file: tuple[Path, str], target: Target, tmp_path: Path
) -> None:
    """The daemon probes on schedule, /metrics shows the 500s, a bad SIGHUP is refused, SIGTERM exits 0."""
    path, url = config_file
    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(path), "--grace", "5"],
            cwd=REPO,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _until(lambda: (_metric(url, "synthmon_probe_runs_total", probe="health", status="PASS") or 0) >= 2)
        assert _metric(url, "synthmon_probe_success", probe="health") == 1
        assert httpx.get(url + "/healthz", timeout=2).status_code == 200
        target.mode = "error"
        _until(lambda: _metric(url, "synthmon_probe_success", probe="health") == 0)
        _until(lambda: (_metric(url, "synthmon_probe_consecutive_failures", probe="health") or 0) >= 2)
        assert _metric(url, "synthmon_probe_status", probe="health", status="FAIL") == 1
        # Polled: on a loaded machine one run may time out (status code 0) before the next sees the 500.
        _until(lambda: _metric(url, "synthmon_http_status_code", probe="health", step="request") == 500)
        fails = _metric(url, "synthmon_probe_runs_total", probe="health", status="FAIL")
        assert fails is not None
        assert fails >= 2
        # SIGHUP with a broken file: rejected, counted, and the running config keeps probing.
        path.write_text(path.read_text().replace("kind: http", "kind: nope", 1))
        proc.send_signal(signal.SIGHUP)
        _until(lambda: _metric(url, "synthmon_config_reloads_total", result="failure") == 1)
        before = _metric(url, "synthmon_probe_runs_total", probe="health", status="FAIL") or 0
        _until(
            lambda: (_metric(url, "synthmon_probe_runs_total", probe="health", status="FAIL") or 0) > before
        )
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - start < 5.5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log_path.read_text()
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    names = {e["event"] for e in events}
    assert {
        "daemon.started",
        "probe.finished",
        "config.reload_failed",
        "daemon.stopping",
        "daemon.stopped",
    } <= names
    assert FAKE_KEY not in output
    assert target.requests[-1][1]["Authorization"] == f"Bearer {FAKE_KEY}"


def _synthmon(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m monitor ARGS`` from the repo root, with the test environment, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _once(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _synthmon("once", "--config", str(path), *args)


def test_once_json_shape_and_exit_codes(config_file: tuple[Path, str], target: Target) -> None:
    """`once` exits 0 when all pass, 1 when one fails, with the documented JSON shape."""
    path, _url = config_file
    ok = _once(path, "--format", "json")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert (doc["schema"], doc["environment"]) == (1, "e2e")
    assert [p["probe"] for p in doc["probes"]] == ["health", "root"]
    step = doc["probes"][0]["steps"][0]
    assert set(step) >= {"step", "status", "duration_s", "http_status", "error", "diagnosis"}
    assert (step["step"], step["status"], step["http_status"], step["error"]) == (
        "request",
        "PASS",
        200,
        None,
    )

    target.mode = "error"
    failed = _once(path, "--format", "json", "--probe", "health")
    assert failed.returncode == 1
    doc = json.loads(failed.stdout)
    assert [p["probe"] for p in doc["probes"]] == ["health"]
    step = doc["probes"][0]["steps"][0]
    assert (doc["probes"][0]["status"], step["http_status"]) == ("FAIL", 500)
    assert "answered 500" in step["error"]
    assert FAKE_KEY not in failed.stdout + failed.stderr


def test_once_table_and_config_errors(config_file: tuple[Path, str], tmp_path: Path) -> None:
    """The table names probes and steps; an unknown probe or a bad config exits 2."""
    path, _url = config_file
    table = _once(path)
    assert table.returncode == 0, table.stderr
    assert "PROBE / STEP" in table.stdout
    assert "health" in table.stdout
    unknown = _once(path, "--probe", "nope")
    assert unknown.returncode == 2
    assert "unknown probe 'nope'" in unknown.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("environment: e2e\nprobes: {}\n")
    broken = _once(bad)
    assert broken.returncode == 2
    assert "probes: Input should be a valid list" in broken.stderr


def test_help_explains_each_command() -> None:
    """`synthmon --help` lists the commands and each subcommand's help describes it."""
    top = subprocess.run(
        [sys.executable, "-m", "monitor", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    )
    for command in ("run", "once", "check-config"):
        assert command in top.stdout
        sub = subprocess.run(
            [sys.executable, "-m", "monitor", command, "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        assert "--config" in sub.stdout


def test_run_exits_1_when_listen_address_is_taken(tmp_path: Path) -> None:
    """A listen address already in use stops start-up with a one-line reason and exit code 1."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "config.yaml"
        path.write_text(f"environment: e2e\nlisten: 127.0.0.1:{port}\n")
        proc = _synthmon("run", "--config", str(path))
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr
