"""``synthmon history``, ``uptime`` and ``silence`` through the real parser, against a SQLite store."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.cli import build_parser
from probes.base import Status, SystemClock
from tests.history.history_helpers import FullStore

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
    store = FullStore.open(f"sqlite:///{db}")
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
    args = build_parser(["monitor.history.commands", "monitor.alerting.commands"]).parse_args(argv)
    code = int(args.func(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_history_formats(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """history prints newest first as a table, JSON lines (full results) and CSV."""
    code, out, _ = run(["history", "--config", str(config), "--since", "1h"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"store: sqlite:///{config.parent / 'var' / 's.db'}"
    assert lines[1].startswith("STARTED_AT")
    assert "FAIL" in lines[2]
    assert "run-fail" in lines[2]
    _, out, err = run(["history", "--config", str(config), "--format", "json"], capsys)
    assert [json.loads(x)["run_id"] for x in out.splitlines()] == ["run-fail", "run-pass"]
    assert err.startswith("store: sqlite:///")  # machine-readable output stays clean
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


SECRET_CONFIG = """\
environment: test
store:
  url: ${{STORE_URL:-sqlite:///{db}}}
secrets:
  api_key: ${{SYNTHMON_API_KEY}}
probes:
  - name: auth
    kind: http
    options: {{url: "http://127.0.0.1:9/health", bearer_secret: api_key}}
"""


def test_store_commands_need_no_probe_secrets(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """history, uptime and silence read only store: (interpolated): SYNTHMON_API_KEY may be unset."""
    monkeypatch.delenv("SYNTHMON_API_KEY", raising=False)
    monkeypatch.delenv("STORE_URL", raising=False)
    path = config.parent / "secret.yaml"
    path.write_text(SECRET_CONFIG.format(db=config.parent / "var" / "s.db"))
    code, out, err = run(["history", "--config", str(path)], capsys)
    assert (code, err) == (0, "")
    assert "run-fail" in out
    assert run(["uptime", "--config", str(path)], capsys)[0] == 0
    code, out, _ = run(["silence", "--config", str(path), "--probe", "auth", "--reason", "deploy"], capsys)
    assert code == 0


def test_silence_refuses_unknown_probe(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """silence --probe with a name not in the config exits 2 naming the configured ones; * is accepted."""
    code, _, err = run(["silence", "--config", str(config), "--probe", "atuh", "--reason", "x"], capsys)
    assert code == 2
    assert "unknown probe 'atuh'" in err
    assert "auth" in err
    code, out, _ = run(["silence", "--config", str(config), "--probe", "*", "--reason", "x"], capsys)
    assert code == 0
    assert "silence #1" in out


def test_missing_store_is_refused_not_created_then_migrate_creates_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing SQLite store is refused with the way out (and not created); synthmon migrate creates it."""
    db = tmp_path / "nowhere" / "s.db"
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=db))
    code, _, err = run(["history", "--config", str(path)], capsys)
    assert code == 2
    assert f"no store at {db}" in err
    assert "synthmon migrate" in err
    assert not db.parent.exists()
    code, out, _ = run(["migrate", "--config", str(path)], capsys)
    assert code == 0
    assert "schema at revision" in out
    code, out, _ = run(["history", "--config", str(path)], capsys)
    assert code == 0
    assert "(nothing)" in out


def test_store_without_schema_is_refused_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing database without synthmon's tables is refused (exit 2), and left without tables."""
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=db))
    code, _, err = run(["uptime", "--config", str(path)], capsys)
    assert code == 2
    assert "no synthmon schema yet" in err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_relative_sqlite_path_is_shown_resolved(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative SQLite URL resolves against the working directory and the header names the file."""
    monkeypatch.chdir(config.parent)
    path = config.parent / "rel.yaml"
    path.write_text(CONFIG.format(db="var/s.db"))
    code, out, _ = run(["history", "--config", str(path)], capsys)
    assert code == 0
    assert out.splitlines()[0] == f"store: sqlite:///{config.parent.resolve() / 'var' / 's.db'}"
    assert "run-fail" in out
