"""Runs are stored compactly (steps packed by monitor.store.runcodec), and stores written before that
are converted by the migration, on SQLite and PostgreSQL, with every reader seeing the same runs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from monitor.results import ProbeResult
from monitor.store import migrate
from monitor.store.engine import create_store_engine
from monitor.store.epoch import to_epoch
from monitor.store.runcodec import pack_steps, unpack_steps
from probes.base import Diagnosis, HttpTiming, Status, StepResult
from tests.history.history_helpers import PG_URL, FullStore, pg_schema_url

from .history_helpers import T0, result

#: More runs than the migration converts per batch, so the batch boundary is crossed.
OLD_RUNS = 2100


def _rich_result(i: int) -> ProbeResult:
    """A run whose steps carry every kind of field (timing, diagnosis, measurements, excerpt)."""
    failing = i % 7 == 0
    base = result(
        probe=("auth", "mlflow_api", "registration")[i % 3],
        status=Status.FAIL if failing else Status.PASS,
        at=T0 + timedelta(seconds=60 * i, microseconds=123456),
        duration=0.5 + i / 10000,
        diagnosis=Diagnosis(cause="artifact_proxy", hint="check the proxy", title="Artifacts")
        if failing
        else None,
    )
    extra = StepResult(
        name="verify",
        status=Status.DEGRADED,
        duration_s=0.2125,
        message="GET /x took 0.21s, budget 0.10s",
        body_excerpt='{"a": "ü"}',
        content_type="application/json",
        timing=HttpTiming(connect_s=0.0011, tls_s=None, ttfb_s=0.2, total_s=0.2125),
        measurements={"upload_bytes_per_second": 12345.5},
    )
    # Times a stored run keeps exactly (0.1 ms), so the runs read back compare equal.
    kept = tuple(s.with_(duration_s=round(s.duration_s, 4)) for s in base.steps)
    return dataclasses.replace(base, steps=(*kept, extra))


def test_packed_steps_round_trip_without_empty_fields() -> None:
    """Packing keeps every field a step has, leaves empty ones out and rounds times to 0.1 ms."""
    steps = [s.to_dict() for s in _rich_result(7).steps]
    steps[0]["duration_s"] = 0.123456789
    back = unpack_steps(pack_steps(steps))
    assert back[0]["duration_s"] == 0.1235
    assert not {"error_class", "diagnosis", "measurements"} & back[0].keys()
    assert [StepResult.from_dict(s) for s in back[1:]] == [StepResult.from_dict(s) for s in steps[1:]]
    assert back[2]["timing"] == {"connect_s": 0.0011, "ttfb_s": 0.2, "total_s": 0.2125}


def test_unknown_packed_format_is_refused() -> None:
    """Bytes of a format this code does not know raise instead of decoding into garbage."""
    with pytest.raises(ValueError, match="unknown stored run format"):
        unpack_steps(b"\x7f" + pack_steps([])[1:])


def test_a_typical_run_packs_to_a_fraction_of_its_json() -> None:
    """The packed steps of a run are under a fifth of the run's full JSON (the old stored form)."""
    run = _rich_result(1)
    full = json.dumps(run.to_dict(), separators=(",", ":"))
    assert len(pack_steps([s.to_dict() for s in run.steps])) * 5 < len(full)


@contextmanager
def _engine(backend: str, tmp_path: Path) -> Iterator[sa.Engine]:
    if backend == "sqlite":
        engine = create_store_engine(f"sqlite:///{tmp_path}/old.db")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    assert PG_URL is not None
    with pg_schema_url(PG_URL) as url:
        engine = create_store_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def _write_0001_runs(engine: sa.Engine, results: list[ProbeResult]) -> None:
    """Rows as synthmon wrote them at revision 0001: the full JSON per run, steps as rows."""
    meta = sa.MetaData()
    runs = sa.Table("runs", meta, autoload_with=engine)
    steps = sa.Table("steps", meta, autoload_with=engine)
    with engine.begin() as conn:
        for i, r in enumerate(results, start=1):
            started = to_epoch(r.started_at)
            failing = r.failing_step
            conn.execute(
                runs.insert().values(
                    id=i,
                    run_id=r.run_id,
                    probe=r.probe,
                    kind=r.kind,
                    environment=r.environment,
                    started_at=started,
                    duration_s=r.duration_s,
                    status=r.status.value,
                    failing_step=failing.name if failing else None,
                    payload=json.dumps(r.to_dict(), separators=(",", ":")),
                )
            )
            conn.execute(
                steps.insert(),
                [
                    {
                        "run_pk": i,
                        "probe": r.probe,
                        "seq": n,
                        "name": s.name,
                        "status": s.status.value,
                        "duration_s": s.duration_s,
                        "started_at": started,
                    }
                    for n, s in enumerate(r.steps)
                ],
            )


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param(
            "postgres",
            marks=[pytest.mark.postgres, pytest.mark.skipif(PG_URL is None, reason="no PostgreSQL")],
        ),
    ],
)
def test_migration_converts_stored_runs_for_every_reader(backend: str, tmp_path: Path) -> None:
    """A store full of full-JSON runs (revision 0001) migrates to the packed form, batch by batch,
    and the readers then return the very runs that were stored."""
    results = [_rich_result(i) for i in range(OLD_RUNS)]
    with _engine(backend, tmp_path) as engine:
        cfg = migrate._config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        _write_0001_runs(engine, results)
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert "payload" not in {c["name"] for c in sa.inspect(engine).get_columns("runs")}
        store = FullStore(engine, retention_days=10000)
        by_id = {r.run_id: r for r in results}
        got = store.runs_by_id(list(by_id))
        assert got == by_id
        newest = store.runs(probe="auth", since=T0, limit=3)
        assert (
            newest
            == sorted((r for r in results if r.probe == "auth"), key=lambda r: r.started_at, reverse=True)[:3]
        )
        latest = store.latest_runs()
        assert latest == {p: newest_of for p, newest_of in ((r.probe, r) for r in results)}
        store.close()
        # And back: the full JSON per run is rebuilt from the columns and the packed steps.
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT payload FROM runs")).scalars().all()
        assert {r.run_id: r for r in (ProbeResult.from_dict(json.loads(p)) for p in stored)} == by_id
