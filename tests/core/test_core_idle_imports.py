"""What the long-running daemon keeps in memory: libraries it needs only for a rare event (a schema
migration, a Slack alert, the MLflow client, another database's dialect) or for a feature not
configured (basic auth) are never imported by it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

#: Modules the daemon must not import at start-up (with the log channel only, on SQLite). Alembic
#: and Mako run in the migration child; slack-sdk loads only with Slack configured; the MLflow
#: client only in the isolated children; the PostgreSQL dialect only for a PostgreSQL store; bcrypt
#: only with basic auth users in the web config.
NOT_AT_START = ["alembic", "mako", "slack_sdk", "mlflow", "sqlalchemy.dialects.postgresql", "bcrypt"]

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


#: Modules ``synthmon run`` does not import: httpx's command-line client and what it imports, and
#: the modules of the other commands.
NOT_FOR_RUN = ["httpx._main", "pygments", "monitor.demo", "sandbox.cli", "monitor.history.commands"]

#: Runs ``synthmon run`` in-process up to binding its listen address, which the test holds (the
#: daemon is then fully built and exits 1), and prints its exit code and which modules it loaded.
_RUN = """\
import json, sys
from monitor.cli import main
code = main(["run", "--config", sys.argv[1], "--log-level", "error"])
print(json.dumps({"code": code, "loaded": [m for m in sys.argv[2:] if sys.modules.get(m) is not None]}))
"""


def test_daemon_does_not_import_httpx_command_line_client(tmp_path: Path) -> None:
    """``synthmon run`` builds the daemon (httpx included) without httpx's command-line client
    (``httpx._main``, which imports click, pygments and rich when they are installed) and without
    the other commands' modules."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        config = tmp_path / "config.yaml"
        config.write_text(
            f"environment: t\nlisten: 127.0.0.1:{held.getsockname()[1]}\n"
            f"store: {{url: 'sqlite:///{tmp_path / 'store.db'}'}}\n"
            "probes:\n  - {name: p, kind: http, options: {url: 'http://127.0.0.1:9/'}}\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", _RUN, str(config), "monitor.daemon", "httpx", *NOT_FOR_RUN],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer == {"code": 1, "loaded": ["monitor.daemon", "httpx"]}
