"""``synthmon report`` through the real parser: a real SQLite store filled by its own append API, and
``--run`` against a real HTTP server on loopback."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from monitor.cli import build_parser
from monitor.results import ProbeResult
from probes.base import Status
from tests.history.history_helpers import FullStore

from .report_scenarios import GENERATED_AT, T_CURRENT, T_PREVIOUS, minutes_before, recovered, seed_situation

CONFIG = """\
environment: prod
store:
  url: sqlite:///{db}
secrets:
  api_key: ${{SYNTHMON_API_KEY}}
probes:
  - {{name: auth, kind: auth, options: {{url: "http://127.0.0.1:9"}}}}
  - {{name: alb_health, kind: alb_health, options: {{}}}}
  - {{name: mlflow_api, kind: mlflow_api, options: {{}}}}
  - {{name: artifact_roundtrip, kind: artifact_roundtrip, options: {{}}}}
  - {{name: registration, kind: registration, options: {{}}}}
"""


class FixedClock:
    """The report's clock: a fixed generation time."""

    def now(self) -> datetime:
        return GENERATED_AT

    def monotonic(self) -> float:
        return 0.0


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Parse ``argv`` with only the report command registered and run it; (exit code, stdout, stderr)."""
    from monitor.report_cli import cmd_report

    args = build_parser(["monitor.report_cli"]).parse_args(argv)
    assert args.func is cmd_report
    code = cmd_report(args, clock=FixedClock())
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config (whose API key is NOT set) and a store holding three runs per probe: an old recovered
    run, then the seed situation twice."""
    monkeypatch.delenv("SYNTHMON_API_KEY", raising=False)
    db = tmp_path / "var" / "report.db"
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=db))
    store = FullStore.open(f"sqlite:///{db}")
    try:
        store.append_runs(recovered(minutes_before(T_PREVIOUS, 60)))
        store.append_runs(seed_situation(T_PREVIOUS))
        store.append_runs(seed_situation(T_CURRENT))
    finally:
        store.close()
    return path


def test_stored_report_is_the_seed_golden(stored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --run the latest two stored runs per probe give exactly the golden seed report, exit 1."""
    code, out, err = run(["report", "--config", str(stored)], capsys)
    assert code == 1  # probes are failing, as with `synthmon once`
    assert out == (Path(__file__).parent / "golden" / "seed_no_change.md").read_text(encoding="utf-8")
    assert err.splitlines()[0] == f"store: sqlite:///{stored.parent / 'var' / 'report.db'}"


def test_stored_report_probe_filter_and_output_file(
    stored: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--probe limits the report to the named probes; --output writes the file and leaves stdout empty."""
    target = tmp_path / "out" / "report.md"
    target.parent.mkdir()
    code, out, err = run(
        [
            "report",
            "--config",
            str(stored),
            "--probe",
            "auth",
            "--probe",
            "mlflow_api",
            "--output",
            str(target),
        ],
        capsys,
    )
    assert code == 0
    assert out == ""
    assert f"report written to {target}" in err
    text = target.read_text(encoding="utf-8")
    assert "### 1. auth ✅ PASS" in text
    assert "### 2. mlflow_api ✅ PASS" in text
    assert "artifact_roundtrip" not in text
    assert "**PASSED - all 2 probes passing**" in text


def test_stored_report_without_previous_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store holding one run per probe yields the no-previous-run report."""
    db = tmp_path / "one.db"
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=db))
    store = FullStore.open(f"sqlite:///{db}")
    try:
        store.append_runs(seed_situation(T_CURRENT))
    finally:
        store.close()
    code, out, _ = run(["report", "--config", str(path)], capsys)
    assert code == 1
    assert out == (Path(__file__).parent / "golden" / "seed_first_run.md").read_text(encoding="utf-8")


def test_unknown_probe_and_missing_store_exit_2(
    tmp_path: Path, stored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A probe name not in the config, or a store that does not exist yet, is exit 2 with one message."""
    code, out, err = run(["report", "--config", str(stored), "--probe", "nope"], capsys)
    assert (code, out) == (2, "")
    assert "unknown probe 'nope'" in err
    missing = tmp_path / "missing.yaml"
    missing.write_text(CONFIG.format(db=tmp_path / "never" / "x.db"))
    code, out, err = run(["report", "--config", str(missing)], capsys)
    assert (code, out) == (2, "")
    assert "synthmon migrate" in err or "store" in err
    assert not (tmp_path / "never" / "x.db").exists()  # the report never creates or migrates a store


class _EchoKeyHandler(BaseHTTPRequestHandler):
    """Answers 503 and echoes the X-API-Key it received in the body (a badly behaved platform)."""

    def do_GET(self) -> None:
        body = json.dumps({"detail": "unavailable", "key": self.headers.get("X-API-Key", "")}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        """Quiet: the test reads the report, not the server log."""


@pytest.fixture
def echo_server() -> Iterator[str]:
    """A loopback HTTP server on a free port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKeyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_run_reports_a_fresh_run_against_the_stored_one_and_masks_the_key(
    tmp_path: Path, echo_server: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--run probes now, compares with the latest stored run (PASS -> FAIL: Regressed), masks the key."""
    key = "plain-" + secrets.token_hex(16)  # not key-shaped: only the config's secret list can mask it
    monkeypatch.setenv("SYNTHMON_API_KEY", key)
    db = tmp_path / "run.db"
    path = tmp_path / "config.yaml"
    path.write_text(
        f"environment: staging\nstore:\n  url: sqlite:///{db}\nsecrets:\n  api_key: ${{SYNTHMON_API_KEY}}\n"
        "probes:\n"
        f"  - {{name: edge, kind: http, options: {{url: '{echo_server}/health', "
        "secret_headers: {X-API-Key: api_key}, step: health, expected_status: [503], "
        "json_equals: {key: none}}}\n"
    )
    store = FullStore.open(f"sqlite:///{db}")
    try:
        before = ProbeResult(
            probe="edge",
            kind="http",
            run_id="earlier",
            started_at=T_PREVIOUS,
            duration_s=0.01,
            status=Status.PASS,
            steps=(),
            environment="staging",
        )
        store.append_runs([before])
    finally:
        store.close()
    code, out, err = run(["report", "--config", str(path), "--run"], capsys)
    assert code == 1
    # The echoed key reached the step's message ("JSON path 'key' is ..."), masked on the way.
    assert "JSON path 'key' is '**********'" in out
    assert key not in out
    assert key not in err
    assert "# Synthetic monitoring report: staging" in out
    assert "**Failing step** `health` answered HTTP 503" in out
    assert "| edge | ✅ PASS | ❌ FAIL at health (HTTP 503" in out
    assert "| **Regressed** |" in out
    store = FullStore.open_existing(f"sqlite:///{db}")
    try:
        # The fresh run is reported, not stored (as with `synthmon once`).
        assert [r.run_id for r in store.runs(probe="edge", since=T_PREVIOUS, limit=10)] == ["earlier"]
    finally:
        store.close()
