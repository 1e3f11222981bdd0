"""What the long-running daemon keeps in memory: libraries it needs only for a rare event (a schema
migration, a Slack alert, the MLflow client, another database's dialect) are never imported by it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Modules the daemon must not import at start-up (with the log channel only, on SQLite). Alembic
#: and Mako run in the migration child; slack-sdk loads only with Slack configured; the MLflow
#: client only in the isolated children; the PostgreSQL dialect only for a PostgreSQL store.
NOT_AT_START = ["alembic", "mako", "slack_sdk", "mlflow", "sqlalchemy.dialects.postgresql"]

#: Builds the production daemon the way ``synthmon run`` does (without serving) and prints the
#: store's revision and which of NOT_AT_START were imported.
_START = """\
import json, sys
from prometheus_client import CollectorRegistry
import structlog
from monitor.app import build_monitor
from monitor.config import load_config
from monitor.store import migrate
from monitor.store.engine import create_store_engine
from probes.base import SystemClock
config = load_config(sys.argv[1])
build_monitor(config, registry=CollectorRegistry(), clock=SystemClock(), logger=structlog.get_logger("t"))
revision = migrate.current_revision(create_store_engine(config.store.url))
print(json.dumps({"revision": revision, "head": migrate.head_revision(),
                  "loaded": sorted(set(sys.argv[2:]) & set(sys.modules))}))
"""


def _start_daemon(config: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _START, str(config), *NOT_AT_START],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answer: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return answer


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "environment: t\nlisten: 127.0.0.1:0\n"
        f"store: {{url: 'sqlite:///{tmp_path / 'store.db'}'}}\n"
        "probes:\n  - {name: p, kind: http, options: {url: 'http://127.0.0.1:9/'}}\n"
    )
    return path


def test_daemon_start_on_a_fresh_store_migrates_without_loading_alembic(config: Path) -> None:
    """A first start creates the schema (in the migration child) and the daemon imports none of the
    modules only a migration, an alert channel not configured or the MLflow client needs."""
    first = _start_daemon(config)
    assert first["revision"] == first["head"]
    assert first["loaded"] == []


def test_daemon_restart_on_a_current_store_loads_no_idle_only_module(config: Path) -> None:
    """A restart on a store already at the head imports none of those modules either."""
    _start_daemon(config)
    again = _start_daemon(config)
    assert again["revision"] == again["head"]
    assert again["loaded"] == []
