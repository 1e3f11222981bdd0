"""The read commands' SQLite path (sqlite3, generated SQL) against the daemon's (SQLAlchemy): same
SQL, same URL reading, same rows, same output, same schema refusals, and no SQLAlchemy import."""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from monitor.cli import build_parser
from monitor.history.commands import UPTIME_WINDOWS
from monitor.history.readsql import READS, sqlite_text
from monitor.history.sqlitereads import SqliteReads
from monitor.history.sqltext import SQLITE
from monitor.results import ProbeResult
from monitor.store.url import NotAUrlError, parse_store_url
from probes.base import Status, SystemClock, parse_duration
from tests.history.history_helpers import PG_SKIP_REASON, PG_URL, FullStore, pg_schema_url

from .history_helpers import T0, result

REPO = Path(__file__).resolve().parents[2]
NOW = T0 + timedelta(days=40, minutes=17, seconds=23)
RETENTION_DAYS = 35


def test_generated_sqlite_text_is_what_sqlalchemy_compiles() -> None:
    """monitor/history/sqltext.py holds exactly the SQLite SQL of every read statement (make sqltext)."""
    assert {name: sqlite_text(name) for name in READS} == SQLITE


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///var/synthmon.db",
        "sqlite:////srv/synthmon/s.db",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite+pysqlite:///rel/dir/s.db",
        "sqlite:///a%20b.db?mode=ro",
        "postgresql+psycopg://user:p%40ss@db.internal:5432/synthmon?options=-csearch_path%3Dx",
        "postgresql://u:p@w@host/db",
        "postgresql://[::1]:5432/db",
        "mysql://x/y",
        "not a url",
        "sqlite:/one-slash.db",
        "",
    ],
)
def test_store_url_is_read_as_sqlalchemy_reads_it(url: str) -> None:
    """The backend and database synthmon reads from a URL are SQLAlchemy's; what it refuses, it refuses."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        with pytest.raises(NotAUrlError):
            parse_store_url(url)
        return
    assert tuple(parse_store_url(url)) == (parsed.get_backend_name(), parsed.database)


def _history() -> list[ProbeResult]:
    """Runs of three probes over 40 days: several locations, every status, and hours-long gaps."""
    rng = random.Random(7)
    statuses = [Status.PASS] * 6 + [Status.FAIL, Status.ERROR, Status.DEGRADED, Status.SKIPPED]
    runs = []
    for minute in range(0, 40 * 24 * 60, 29):
        if (minute // 600) % 7 == 3:  # a gap of ten hours now and then
            continue
        for probe, location in (("auth", "default"), ("auth", "eu-west"), ("registry", "default")):
            at = T0 + timedelta(minutes=minute, seconds=rng.randint(0, 59))
            base = result(probe, rng.choice(statuses), at, duration=round(rng.uniform(0.1, 2.0), 3))
            runs.append(dataclasses.replace(base, location=location))
    return runs


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store holding :func:`_history`."""
    path = tmp_path_factory.mktemp("readpath") / "s.db"
    store = FullStore.open(f"sqlite:///{path}")
    runs = _history()
    for i in range(0, len(runs), 500):
        store.append_runs(runs[i : i + 500])
    store.close()
    return path


@pytest.fixture
def both(store_file: Path) -> Iterator[tuple[FullStore, SqliteReads]]:
    """The store opened as the daemon opens it and as the read commands open it."""
    daemon = FullStore.open_existing(f"sqlite:///{store_file}", retention_days=RETENTION_DAYS)
    lite = SqliteReads.open(store_file)
    yield daemon, lite
    lite.close()
    daemon.close()


@pytest.mark.parametrize("window", [*UPTIME_WINDOWS, "39d", "90m"])
def test_uptime_is_the_same_through_sqlite3_and_sqlalchemy(
    both: tuple[FullStore, SqliteReads], window: str
) -> None:
    """Every uptime window (raw edges, rollups, past raw retention) counts the same on both paths."""
    daemon, lite = both
    since = NOW - timedelta(seconds=parse_duration(window))
    via_sqlalchemy = daemon.history.uptime(since=since, until=NOW, now=NOW)
    via_sqlite3 = lite.history(retention_days=RETENTION_DAYS).uptime(since=since, until=NOW, now=NOW)
    assert via_sqlite3 == via_sqlalchemy
    assert {row.step for row in via_sqlite3} == {None, "setup", "upload"}


@pytest.mark.parametrize(
    ("probe", "since_days", "limit"),
    [(None, 1, 60), ("auth", 7, 50), ("registry", 40, 5), ("nope", 40, 10)],
)
def test_history_runs_are_the_same_through_sqlite3_and_sqlalchemy(
    both: tuple[FullStore, SqliteReads], probe: str | None, since_days: int, limit: int
) -> None:
    """history's runs (newest first, filtered, limited, with locations) are equal on both paths."""
    daemon, lite = both
    since = NOW - timedelta(days=since_days)
    via_sqlalchemy = daemon.history.runs(probe=probe, since=since, limit=limit)
    via_sqlite3 = lite.history(retention_days=RETENTION_DAYS).runs(probe=probe, since=since, limit=limit)
    assert via_sqlite3 == via_sqlalchemy
    assert len(via_sqlite3) == (0 if probe == "nope" else limit)


CONFIG = """\
environment: test
store: {{url: '{url}', retention_days: 31}}
probes:
  - {{name: auth, kind: http, options: {{url: "http://127.0.0.1:9/"}}}}
"""


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    args = build_parser(["monitor.history.commands"]).parse_args(argv)
    code = int(args.func(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _recent(now: datetime) -> list[ProbeResult]:
    """Runs at whole minutes plus 30 s back from ``now`` (so a window edge never falls near one),
    spread over every uptime window, with a gap and two locations."""
    rng = random.Random(11)
    statuses = [Status.PASS, Status.PASS, Status.FAIL, Status.ERROR, Status.DEGRADED]
    runs = []
    for minute in [*range(1, 200, 3), *range(300, 40 * 24 * 60, 97)]:
        at = now - timedelta(minutes=minute, seconds=30)
        base = result("auth", rng.choice(statuses), at, duration=round(rng.uniform(0.1, 2.0), 3))
        runs.append(dataclasses.replace(base, location=rng.choice(["default", "eu-west"])))
    return runs


@pytest.mark.postgres
@pytest.mark.skipif(PG_URL is None, reason=PG_SKIP_REASON)
def test_commands_print_the_same_on_sqlite_and_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """uptime and history print the same from a SQLite store (sqlite3) and a PostgreSQL one (SQLAlchemy)."""
    assert PG_URL is not None
    runs = _recent(SystemClock().now())
    with pg_schema_url(PG_URL) as pg_url:
        outputs = []
        for url in (f"sqlite:///{tmp_path / 's.db'}", pg_url):
            store = FullStore.open(url)
            store.append_runs(runs)
            store.close()
            config = tmp_path / "config.yaml"
            config.write_text(CONFIG.format(url=url))
            printed = []
            for argv in (["uptime", "--format", "json"], ["history", "--since", "30d", "--format", "json"]):
                code, out, _ = _cli([*argv, "--config", str(config)], capsys)
                assert code == 0
                printed.append(out)
            outputs.append(printed)
    assert outputs[0] == outputs[1]
    uptime = json.loads(outputs[0][0])
    assert set(uptime["auth/(run)"]) == set(UPTIME_WINDOWS)
    assert {json.loads(line)["location"] for line in outputs[0][1].splitlines()} == {"default", "eu-west"}


def _stamp(path: Path, revision: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))


@pytest.mark.parametrize(
    ("revision", "message"),
    [
        ("0004", "older than this synthmon's"),
        ("9999_future", "newer than this synthmon"),
    ],
    ids=["outdated", "too-new"],
)
def test_sqlite_read_commands_refuse_a_store_at_another_revision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], revision: str, message: str
) -> None:
    """history and uptime refuse (exit 2, the schema error) a SQLite store not at this synthmon's revision."""
    db = tmp_path / "s.db"
    FullStore.open(f"sqlite:///{db}").close()
    _stamp(db, revision)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(url=f"sqlite:///{db}"))
    for command in ("history", "uptime"):
        code, out, err = _cli([command, "--config", str(config)], capsys)
        assert (code, out) == (2, "")
        assert err.startswith(f"synthmon: store sqlite:///{db}: ")
        assert message in err
        assert repr(revision) in err


def test_sqlite_read_commands_do_not_import_sqlalchemy(store_file: Path, tmp_path: Path) -> None:
    """synthmon history and uptime on a SQLite store run without importing SQLAlchemy (or Alembic)."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(url=f"sqlite:///{store_file}"))
    script = (
        "import sys\n"
        "from monitor.cli import main\n"
        "for argv in (['uptime'], ['history', '--probe', 'auth']):\n"
        f"    assert main([*argv, '--config', {str(config)!r}]) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.splitlines()[-1] == "[]"
