"""Builders shared by the SLO tests: runs with chosen step statuses, stores on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.results import ProbeResult
from probes.base import Status, StepResult
from tests.history.conftest import BACKENDS
from tests.history.history_helpers import FullStore, open_store

T0 = datetime(2025, 7, 22, 10, 0, tzinfo=UTC)


def run(
    probe: str, at: datetime, *statuses: Status, names: tuple[str, ...] = ("setup", "get", "cleanup")
) -> ProbeResult:
    """A run of ``probe`` at ``at`` whose steps ``names`` have ``statuses`` (run status derived)."""
    steps = tuple(StepResult(name=n, status=s, duration_s=0.1) for n, s in zip(names, statuses, strict=True))
    return ProbeResult(
        probe=probe,
        kind="http",
        run_id=uuid.uuid4().hex,
        started_at=at,
        duration_s=0.3,
        status=ProbeResult.status_of(steps),
        steps=steps,
    )


@pytest.fixture(params=BACKENDS)
def slo_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FullStore]:
    """A fresh, migrated store on SQLite and (when configured) PostgreSQL."""
    with open_store(str(request.param), tmp_path) as store:
        yield store
