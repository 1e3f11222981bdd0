"""`synthmon once` in a pipeline: exit codes that tell platform from monitor, and the JUnit report.

The probes talk to a real HTTP server on loopback (tests/core/target.py); the monitor's own failure
is a probe kind that raises (tests/core/kinds.py), as a bug or a missing local dependency would.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
import yaml

from monitor.cli import build_parser, main
from monitor.once_output import EXIT_MONITOR
from tests.core.conftest import REPO
from tests.core.target import Target

SCHEMA = xmlschema.XMLSchema(Path(__file__).parent / "schemas" / "jenkins-junit-10.xsd")

#: A configured secret, and a key-shaped string nobody configured: both must be masked.
SECRET = "plain-" + "secret-" + "q" * 16
LOOSE_KEY = "hk_" + "live_" + "Zq7" * 8


def _config(tmp_path: Path, target: Target) -> Path:
    """api: JSON health check; ui: same target with a 50 ms budget; boom: a check that cannot run."""
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""\
environment: ci
secrets:
  token: ${{TOKEN}}
probes:
  - name: api
    kind: http
    timeout: 3s
    options:
      url: {target.url}/health
      bearer_secret: token
      json_equals: {{status: healthy}}
  - name: ui
    kind: http
    timeout: 3s
    options:
      url: {target.url}/ui
      latency_budget: 50ms
  - name: boom
    kind: t_boom
    enabled: false
    options:
      message: "could not start the client with ${{TOKEN}} and {LOOSE_KEY}"
"""
    )
    return path


@pytest.fixture
def config(tmp_path: Path, target: Target, test_kinds: None, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config file, with TOKEN set to SECRET."""
    monkeypatch.setenv("TOKEN", SECRET)
    return _config(tmp_path, target)


def _once(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["once", "--config", str(config), "--log-format", "json", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _junit(text: str) -> ET.Element:
    SCHEMA.validate(text)
    return ET.fromstring(text.encode("utf-8"))  # noqa: S314 - our own output, just validated


def test_all_passed_or_degraded_exits_0(
    config: Path, target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """A slow but correct platform (PASS and DEGRADED) exits 0; the JUnit report has no failure."""
    target.mode, target.delay_s = "slow", 0.2
    code, out, _err = _once(capsys, config, "--format", "junit")
    assert code == 0
    root = _junit(out)
    assert [s.get("name") for s in root.iter("testsuite")] == ["api", "ui"]
    assert (root.get("failures"), root.get("errors")) == ("0", "0")
    statuses = {s.get("name"): s.find("properties/property[@name='status']") for s in root.iter("testsuite")}
    assert {name: p.get("value") for name, p in statuses.items() if p is not None} == {
        "api": "PASS",
        "ui": "DEGRADED",
    }


def test_platform_failure_exits_1_even_when_the_monitor_also_failed(
    config: Path, target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 500 from the platform is a FAIL: exit 1, also when another check could not run (ERROR)."""
    target.mode = "error"
    code, out, err = _once(capsys, config, "--format", "junit", "--probe", "api", "--probe", "boom")
    assert code == 1
    root = _junit(out)
    (failure,) = root.iter("failure")
    assert failure.get("message") == "GET /health answered 500, expected 200"
    assert "http_status: 500" in (failure.text or "")
    assert "cause: server_error" in (failure.text or "")
    (error,) = root.iter("error")
    assert error.get("type") == "RuntimeError"
    assert SECRET not in out + err
    assert LOOSE_KEY not in out + err


def test_monitor_failure_alone_exits_3(
    config: Path, target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """The platform answers correctly but a check cannot run (ERROR, no FAIL): exit 3, not 1."""
    code, out, _err = _once(capsys, config, "--format", "json", "--probe", "api", "--probe", "boom")
    assert code == 3
    assert "answered 500" not in out
    assert target.count() == 1  # the platform was checked, and passed


@pytest.mark.parametrize("fmt", ["table", "json", "junit"])
def test_secrets_are_masked_in_every_format(
    fmt: str, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configured secret and a key-shaped string in an error show as ********** in every format."""
    code, out, err = _once(capsys, config, "--format", fmt, "--probe", "boom")
    assert code == 3
    assert SECRET not in out + err
    assert LOOSE_KEY not in out + err
    assert "**********" in out
    if fmt == "junit":
        (error,) = _junit(out).iter("error")
        assert (
            error.get("message") == "RuntimeError: could not start the client with ********** and **********"
        )


def test_output_file_gets_the_report_and_stdout_the_table(
    config: Path, target: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--output writes the JUnit report to the file; the job log (stdout) shows the table."""
    report = tmp_path / "synthmon.xml"
    target.mode = "error"
    code, out, err = _once(capsys, config, "--format", "junit", "--output", str(report), "--probe", "api")
    assert code == 1
    assert "PROBE / STEP" in out
    assert f"junit report written to {report}" in err
    assert len(list(_junit(report.read_text(encoding="utf-8")).iter("failure"))) == 1


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--probe", "nope"], id="unknown-probe"),
        pytest.param(["--output", "/nonexistent-dir/synthmon.xml"], id="output-dir-missing"),
        pytest.param(["--output", "."], id="output-is-a-directory"),
    ],
)
def test_usage_errors_exit_2_before_any_check(
    args: list[str], config: Path, target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown probe or an unwritable --output exits 2 and sends no request to the platform."""
    code, _out, err = _once(capsys, config, *args)
    assert code == 2
    assert err.startswith("synthmon: ")
    assert target.count() == 0


def test_invalid_config_and_unknown_format_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config that does not validate, or a --format that does not exist, exits 2."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("environment: ci\nprobes: {}\n")
    assert _once(capsys, bad)[0] == 2
    with pytest.raises(SystemExit) as exit_:
        main(["once", "--config", str(bad), "--format", "xml"])
    assert exit_.value.code == 2


def test_once_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`synthmon once --help` names each exit code a pipeline branches on, and the junit format."""
    with pytest.raises(SystemExit):
        main(["once", "--help"])
    text = capsys.readouterr().out
    for line in (r"0\s+every probe PASS or DEGRADED", r"1\s+the platform failed", r"2\s+invalid config"):
        assert re.search(line, text), line
    assert "3  only the monitor failed" in text
    assert "junit" in text


# The process's own exit status, as a pipeline sees it: the raising kind is registered by a tiny
# wrapper because a child process cannot be monkeypatched.
_WRAPPER = """\
import sys
from probes.registry import PROBE_KINDS
from tests.core import kinds
PROBE_KINDS["t_boom"] = kinds.BoomProbe
from monitor.once_output import EXIT_MONITOR
from monitor.cli import build_parser, main
sys.exit(main(sys.argv[1:]))
"""


def test_process_exit_status_is_3_for_a_monitor_failure(tmp_path: Path, target: Target) -> None:
    """The `synthmon once` process itself exits 3 when only the monitor failed, 0 when all passed."""
    config = _config(tmp_path, target)
    env = {**os.environ, "TOKEN": SECRET, "PYTHONPATH": str(REPO)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-c", _WRAPPER, "once", "--config", str(config), *args]
        return subprocess.run(
            argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    assert run("--probe", "api").returncode == 0
    failed = run("--probe", "api", "--probe", "boom")
    assert failed.returncode == 3, failed.stderr
    assert SECRET not in failed.stdout + failed.stderr


def test_pipeline_docs_use_real_options_and_the_real_exit_codes() -> None:
    """docs/pipelines.md: its YAML parses, each `synthmon once` line parses, GitLab allows exactly 3."""
    text = (REPO / "docs" / "pipelines.md").read_text()
    blocks = re.findall(r"```(\w+)\n(.*?)```", text, re.S)
    yamls = [yaml.safe_load(body) for lang, body in blocks if lang == "yaml"]
    assert len(yamls) == 2
    gitlab = next(doc["verify"] for doc in yamls if "allow_failure" in doc.get("verify", {}))
    assert gitlab["allow_failure"] == {"exit_codes": [EXIT_MONITOR]}
    assert gitlab["artifacts"]["reports"]["junit"] == "synthmon-junit.xml"
    commands = re.findall(r"synthmon(?::[\w.]+)? (once [^'|>\n]*)", text)
    assert len(commands) >= 5
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command))
        assert args.func.__name__ == "_cmd_once", command
