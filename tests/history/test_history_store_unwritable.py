"""A store that cannot be created at start-up: the daemon starts and probes anyway, and one log line
says which file and why (SQLite's own words), retried in the background."""

from __future__ import annotations

import io
import json
from pathlib import Path

from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig
from monitor.app import build_store_features
from monitor.logs import make_logger
from monitor.store.config import StoreConfig
from probes.support.masking import SecretMasker

from .history_helpers import T0, FakeClock


def test_store_under_a_file_is_one_clear_line_and_no_crash(tmp_path: Path) -> None:
    """A store path whose directory is a regular file: start-up goes on, the gate says why."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    stream = io.StringIO()
    logger = make_logger(SecretMasker(), stream=stream, json=True)
    registry = CollectorRegistry()
    features = build_store_features(
        StoreConfig(url=f"sqlite:///{blocker}/synthmon.db"),
        AlertingConfig(),
        {},
        registry,
        FakeClock(T0),
        logger=logger,
    )
    try:
        assert features.gate is not None
        assert not features.gate.ready
        records = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
        [unavailable] = [r for r in records if r["event"] == "store.unavailable"]
        assert unavailable["error"] == "OperationalError"
        assert "unable to open database file" in unavailable["detail"]
        assert str(blocker) in unavailable["store"]
        assert registry.get_sample_value("synthmon_store_ready") == 0
    finally:
        features.db.close()
        if features.executor is not None:
            features.executor.shutdown(wait=False)
