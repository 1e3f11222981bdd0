"""`synthmon demo`: the demo profile, incidents in the terminal, commands that run as printed, and end
to end: sandbox up, a live fault opening an incident, Ctrl-C stopping it all."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from probes_helpers import DEFAULT_CONFIG, REPO

from monitor.config import Config, ProbeConfig, load_config, parse_config
from monitor.demo import (
    IncidentPrinter,
    _run_daemon,
    demo_config,
    format_incident,
    format_result,
    history_command,
    prepare_environment,
    synthmon_command,
)
from monitor.demo_profile import demo_profile, open_within_s
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


# --- the demo profile ----------------------------------------------------------------------------


def _shipped() -> Config:
    return load_config(DEFAULT_CONFIG, env={"SYNTHMON_API_KEY": FAKE_KEY})


def test_demo_profile_times_the_shipped_config_for_a_live_demo() -> None:
    """Every probe runs at least every 15 s (registration every 60 s), with a valid timing."""
    shipped = _shipped()
    profiled = demo_profile(shipped)
    assert [p.name for p in profiled.probes] == [p.name for p in shipped.probes]
    for probe in profiled.probes:
        assert probe.interval <= (60 if probe.kind == "registration" else 15), probe.name
        # The profile must pass the checks a config file would: timeout, jitter and budget fit.
        ProbeConfig.model_validate(probe.model_dump())
        original = next(p for p in shipped.probes if p.name == probe.name)
        assert (probe.options, probe.depends_on) == (original.options, original.depends_on)


@pytest.mark.parametrize(
    "probe", ["auth", "alb_health", "mlflow_api", "artifact_roundtrip"], ids=lambda name: name
)
def test_demo_profile_opens_an_incident_within_a_minute(probe: str) -> None:
    """Worst case from the profile (threshold x (interval + jitter) + timeout) is under 60 s, where the
    shipped config takes minutes."""
    assert open_within_s(demo_profile(_shipped()), probe) <= 60
    assert open_within_s(_shipped(), probe) > 60


def test_demo_profile_registration_pages_on_one_failure_and_resolves_on_one_pass() -> None:
    """Registration (every 60 s) opens and resolves on a single run; 15 s probes keep two."""
    alerting = demo_profile(_shipped()).alerting
    assert alerting.rule_for("registration").failure_threshold == 1
    assert alerting.rule_for("registration").success_threshold == 1
    assert alerting.rule_for("artifact_roundtrip").failure_threshold == 2
    assert alerting.channels() == ("log",)  # what prints incidents in the terminal


def test_demo_profile_only_shortens() -> None:
    """Settings already faster than the profile's are kept."""
    text = (
        "environment: t\n"
        "alerting: {rules: {failure_threshold: 1}}\n"
        "probes:\n"
        "  - {name: quick, kind: http, interval: 5s, timeout: 2s, options: {url: 'http://127.0.0.1:9/'}}\n"
    )
    profiled = demo_profile(parse_config(text, source="t.yaml", env={}))
    assert (profiled.probes[0].interval, profiled.probes[0].timeout) == (5.0, 2.0)
    assert profiled.alerting.rule_for("quick").failure_threshold == 1


# --- incidents in the terminal ---------------------------------------------------------------------

_NOW = datetime(2026, 7, 1, 12, 3, 0, tzinfo=UTC)
_INCIDENT = {
    "probe": "artifact_roundtrip",
    "step": "upload",
    "http_status": 404,
    "cause": "artifact_route_not_deployed",
    "hint": "artifact route not deployed",
    "action": "Check the proxy's artifact route.",
    "root_cause": "Artifact storage not deployed",
    "affected": ["artifact_roundtrip/upload", "registration/log_model"],
    "still_failing": ["registration/log_model"],
    "since": datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC).isoformat(),
    "change": "PASS -> FAIL",
}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            "incident_opened",
            "INCIDENT OPENED: Artifact storage not deployed, at artifact_roundtrip/upload (HTTP 404)",
        ),
        (
            "incident_joined",
            "artifact_roundtrip/upload joins it; affected: artifact_roundtrip/upload, registration",
        ),
        ("incident_recovered", "artifact_roundtrip recovered; still failing: registration/log_model"),
        ("incident_resolved", "INCIDENT RESOLVED after 3 min: Artifact storage not deployed; affected:"),
    ],
    ids=["opened", "joined", "recovered", "resolved"],
)
def test_incident_events_read_as_lines(event: str, expected: str) -> None:
    """Each incident event of the log channel becomes a readable line naming the root cause."""
    text = format_incident(event, _INCIDENT, _NOW)
    assert text is not None
    assert expected in text
    if event == "incident_opened":
        assert "do:  Check the proxy's artifact route." in text


@pytest.mark.parametrize("event", ["incident_event", "probe.finished", "incident_transition_failed"])
def test_other_log_events_are_not_printed(event: str) -> None:
    """Only the log channel's incident events reach the terminal, not the sink's own log lines."""
    assert format_incident(event, _INCIDENT, _NOW) is None


def test_incident_printer_prints_masked_and_still_logs() -> None:
    """The printer shows the event on the terminal (secrets masked) and passes it to the real logger."""
    import io
    import threading

    from probes.support.masking import SecretMasker

    logged: list[tuple[str, dict[str, object]]] = []

    class _Logger:
        def warning(self, event: str, **fields: object) -> None:
            logged.append((event, fields))

    out = io.StringIO()
    printer = IncidentPrinter(_Logger(), out, threading.Lock(), lambda: _NOW, SecretMasker([FAKE_KEY]))
    printer.warning("incident_opened", **{**_INCIDENT, "hint": f"key {FAKE_KEY} refused"})
    assert "INCIDENT OPENED" in out.getvalue()
    assert FAKE_KEY not in out.getvalue()
    assert logged[0][0] == "incident_opened"


# --- commands in the banner ---------------------------------------------------------------------------


def test_history_command_is_none_for_a_config_naming_its_store_literally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When SYNTHMON_STORE_URL cannot reach the config's store, no (wrong) command is offered."""
    monkeypatch.chdir(REPO)
    literal = tmp_path / "literal.yaml"
    literal.write_text("environment: t\nstore: {url: 'sqlite:////srv/prod.db'}\n")
    assert history_command(str(literal), tmp_path) is None
    command = history_command(str(DEFAULT_CONFIG), tmp_path)
    assert command is not None
    assert command.startswith(f"SYNTHMON_STORE_URL=sqlite:///{tmp_path / 'synthmon.db'} ")
    assert command.endswith(" report --config config.yaml")  # relative: typed from the repo root


def test_synthmon_command_is_a_path_not_a_bare_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """After `make demo` synthmon is not on PATH: the banner names .venv/bin/synthmon from the repo root."""
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "synthmon").write_text("")
    monkeypatch.setattr(sys, "executable", str(venv / "python"))
    monkeypatch.chdir(tmp_path)
    assert synthmon_command() == ".venv/bin/synthmon"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert synthmon_command() == str(venv / "synthmon")


# --- the live demo -------------------------------------------------------------------------------------


class _Demo:
    """``synthmon demo`` as a subprocess: its stdout read line by line with deadlines."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
        )
        assert self.proc.stdout is not None
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.lines: list[str] = []

    def until(self, predicate: Any, timeout_s: float, what: str) -> str:
        """Read until a line satisfies ``predicate``; fail with the output so far at the deadline."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._selector.select(timeout=1.0):
                if self.proc.poll() is not None:
                    break
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if predicate(line):
                return line
        self.proc.kill()
        _, err = self.proc.communicate(timeout=30)
        pytest.fail(f"demo: no {what}:\n" + "".join(self.lines[-60:]) + "\nstderr:\n" + err[-3000:])

    def command(self, label: str) -> str:
        """The banner's command after ``label:``, exactly as printed."""
        line = next(line for line in self.lines if line.lstrip().startswith(label + ":"))
        return line.split(":", 1)[1].strip()


def _shell(command: str) -> subprocess.CompletedProcess[str]:
    """Run a printed command as a user would paste it, from the directory the demo started in."""
    return subprocess.run(
        ["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


@pytest.mark.sandbox
def test_demo_live_fault_opens_an_incident_and_its_printed_commands_work(tmp_path: Path) -> None:
    """The printed fault command breaks the platform, an incident opens (shown in the terminal) and
    resolves after the printed heal command; Ctrl-C stops everything; the printed report command
    finds the demo's runs."""
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
    demo = _Demo([*argv, "--auth-port", "0", "--registry-port", "0"], env)
    state: dict[str, int] = {}
    try:
        demo.until(lambda line: line.startswith("Ctrl-C stops everything"), 240, "banner")
        banner = "".join(demo.lines)
        assert f"status page: http://127.0.0.1:{port}/ " in banner
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        assert "every 15 s" in banner
        # A healthy round first, so the incident below is the fault's doing.
        demo.until(lambda line: line.split()[1:3] == ["artifact_roundtrip", "PASS"], 120, "healthy round")
        broke = _shell(demo.command("break it"))
        assert broke.returncode == 0, broke.stderr
        assert "active faults: artifacts-404" in broke.stdout
        injected = time.monotonic()
        # The profile bounds this to 47 s (test_demo_profile_opens_an_incident_within_a_minute); the
        # deadline leaves room for a machine busy with other tests.
        opened = demo.until(lambda line: "INCIDENT OPENED" in line, 120, "incident")
        print(f"incident opened {time.monotonic() - injected:.1f} s after the fault")
        assert "Artifact storage not deployed" in opened
        assert "artifact_roundtrip/upload" in opened or "registration/log_model" in opened
        healed = _shell(demo.command("heal it"))
        assert healed.returncode == 0, healed.stderr
        resolved = demo.until(lambda line: "INCIDENT RESOLVED" in line, 240, "resolution")
        assert "Artifact storage not deployed" in resolved
        state = json.loads((tmp_path / "sandbox" / "sandbox.json").read_text())
    finally:
        demo.proc.send_signal(signal.SIGINT)
        try:
            out, err = demo.proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            demo.proc.kill()
            out, err = demo.proc.communicate()
    assert demo.proc.returncode == 0, err[-3000:]
    farewell = out.splitlines()
    report_command = farewell[farewell.index("the demo's runs stay in its store; to read them:") + 1].strip()
    report = _shell(report_command)
    assert "**Environment**: `demo`" in report.stdout, report.stderr
    assert "| Component | Previous | Current | Status |" in report.stdout
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
        psutil.pid_exists(state[k]) for k in ("platform_pid", "mlflow_pid")
    ):
        time.sleep(0.2)
    assert not any(psutil.pid_exists(state[k]) for k in ("platform_pid", "mlflow_pid"))
