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

from monitor.config import parse_config
from monitor.demo import _run_daemon, demo_config, format_result, prepare_environment
from monitor.results import ProbeResult
from probes.base import Diagnosis, Status, StepResult

FAKE_KEY = "hk_test_" + "x" * 32
FAKE_SLACK_TOKEN = "xoxb-test-" + "0" * 24
PRODUCTION_STORE = "postgresql+psycopg://synthmon:not-a-real-password@db.prod.test/synthmon"


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
    first, message = format_result(result).split("\n")
    assert first.split()[1:4] == ["artifact_roundtrip", "FAIL", "0.25s"]
    assert first.endswith("upload  [artifact_route_not_deployed]")
    assert message.strip() == "PUT /x answered 404, expected 200"


def _production_shell() -> dict[str, str]:
    return {
        "PATH": "/usr/bin",
        "SLACK_BOT_TOKEN": FAKE_SLACK_TOKEN,
        "SLACK_CHANNEL": "#platform-oncall",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.test/services/T0/B0/xxxx",
        "SYNTHMON_STORE_URL": PRODUCTION_STORE,
        "SYNTHMON_ENV": "prod",
        "SYNTHMON_LISTEN": "127.0.0.1:9999",
    }


def test_demo_environment_replaces_production_settings(tmp_path: Path) -> None:
    """A shell's production store, environment name and SLACK_* do not survive into the demo."""
    environ = _production_shell()
    prepare_environment(environ, {"SYNTHMON_API_KEY": FAKE_KEY}, tmp_path, keep_slack=False)
    assert not [n for n in environ if n.startswith("SLACK_")]
    assert environ["SYNTHMON_STORE_URL"] == f"sqlite:///{tmp_path / 'synthmon.db'}"
    assert environ["SYNTHMON_ENV"] == "demo"
    assert environ["SYNTHMON_API_KEY"] == FAKE_KEY
    assert environ["SYNTHMON_LISTEN"] == "127.0.0.1:9999"  # where to listen is the user's choice


def test_demo_slack_flag_keeps_slack(tmp_path: Path) -> None:
    """With --slack the SLACK_* variables stay (the store is still the demo's own)."""
    environ = _production_shell()
    prepare_environment(environ, {}, tmp_path, keep_slack=True)
    assert environ["SLACK_BOT_TOKEN"] == FAKE_SLACK_TOKEN
    assert environ["SYNTHMON_STORE_URL"].startswith("sqlite:///")


def test_demo_config_overrides_a_config_file_naming_production_literally(tmp_path: Path) -> None:
    """A config file with a literal production store and Slack webhook still gets the demo's own."""
    text = (
        "environment: prod\n"
        f"store:\n  url: {PRODUCTION_STORE}\n"
        "alerting:\n  slack:\n    webhook_url: https://hooks.slack.test/services/T0/B0/xxxx\n"
    )
    config = parse_config(text, source="prod.yaml", env={})
    assert config.alerting.slack.enabled
    demo = demo_config(config, tmp_path, keep_slack=False)
    assert demo.environment == "demo"
    assert demo.store.url == f"sqlite:///{tmp_path / 'synthmon.db'}"
    assert not demo.alerting.slack.enabled
    assert demo_config(config, tmp_path, keep_slack=True).alerting.slack.enabled


class _FakeSandbox:
    """Just what the demo's daemon half reads from a started sandbox (nothing listens there)."""

    auth_url = "http://127.0.0.1:9"
    registry_url = "http://127.0.0.1:9"
    workdir = Path("/nonexistent")

    def env(self) -> dict[str, str]:
        return {"AUTH_URL": self.auth_url, "REGISTRY_URL": self.registry_url, "SYNTHMON_API_KEY": FAKE_KEY}

    def active_faults(self) -> list[str]:
        return []


def test_demo_listen_port_in_use_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the listen port is taken the demo says so in one line and exits 1 (no traceback)."""
    import argparse
    import io

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The demo exports to os.environ; a copy keeps this test's process environment intact.
        monkeypatch.setattr(os, "environ", {**os.environ, "SYNTHMON_LISTEN": f"127.0.0.1:{port}"})
        args = argparse.Namespace(config=str(DEFAULT_CONFIG), slack=False)
        code = _run_daemon(args, _FakeSandbox(), tmp_path, io.StringIO())
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1, err
    assert f"127.0.0.1:{port}" in err
    assert "Traceback" not in err


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
