"""``synthmon history``, ``uptime`` and ``silence`` through the real parser, against a SQLite store."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.cli import build_parser
from monitor.history.sqlstore import SqlStore
from probes.base import Status, SystemClock

from .history_helpers import result

CONFIG = """\
environment: test
store:
  url: sqlite:///{db}
probes:
  - name: auth
    kind: http
    options: {{url: "http://127.0.0.1:9/health"}}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config file whose store has two auth runs from the last hour (one FAIL)."""
    db = tmp_path / "var" / "s.db"
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=db))
    store = SqlStore.open(f"sqlite:///{db}")
    now = SystemClock().now()
    store.append_runs(
        [
            result("auth", Status.PASS, now - timedelta(minutes=20), run_id="run-pass"),
            result("auth", Status.FAIL, now - timedelta(minutes=10), run_id="run-fail"),
        ]
    )
    store.close()
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    args = build_parser(["monitor.history.commands"]).parse_args(argv)
    code = int(args.func(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_history_formats(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """history prints newest first as a table, JSON lines (full results) and CSV."""
    code, out, _ = run(["history", "--config", str(config), "--since", "1h"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("STARTED_AT")
    assert "FAIL" in lines[1]
    assert "run-fail" in lines[1]
    _, out, _ = run(["history", "--config", str(config), "--format", "json"], capsys)
    assert [json.loads(x)["run_id"] for x in out.splitlines()] == ["run-fail", "run-pass"]
    _, out, _ = run(["history", "--config", str(config), "--format", "csv", "--probe", "nope"], capsys)
    assert out.strip() == "started_at"


def test_uptime_table_and_json(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """uptime reports 50% for the probe over every window and 100% for its passing step."""
    code, out, _ = run(["uptime", "--config", str(config), "--format", "json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["auth/(run)"]["24h"]["uptime"] == 0.5
    assert data["auth/setup"]["30d"]["uptime"] == 1.0
    _, out, _ = run(["uptime", "--config", str(config)], capsys)
    assert "50.00%" in out


def test_silence_add_list_clear(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """silence adds a stored silence, lists it, and clears it; clearing nothing exits 1."""
    code, out, _ = run(
        ["silence", "--config", str(config), "--probe", "auth", "--for", "30m", "--reason", "deploy"], capsys
    )
    assert code == 0
    assert "silence #1" in out
    _, out, _ = run(["silence", "list", "--config", str(config)], capsys)
    assert "deploy" in out
    assert run(["silence", "clear", "--config", str(config), "--id", "1"], capsys)[0] == 0
    assert run(["silence", "clear", "--config", str(config), "--id", "1"], capsys)[0] == 1
    code, _, err = run(["silence", "--config", str(config), "--probe", "auth"], capsys)
    assert code == 2
    assert "--reason" in err


def test_unreachable_store_is_one_line_without_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreachable PostgreSQL store exits 2 with one line that masks the password."""
    path = tmp_path / "config.yaml"
    path.write_text(
        CONFIG.format(db="X").replace("sqlite:///X", "postgresql+psycopg://u:hunter2pw@127.0.0.1:9/x")
    )
    code, _, err = run(["history", "--config", str(path)], capsys)
    assert code == 2
    assert "hunter2pw" not in err
    assert "cannot open store" in err
