"""The SLOs where people read them: /api/v1/slo, the status page section and `synthmon slo`, over a
real store through the wiring the daemon uses."""

from __future__ import annotations

import io
import json
from argparse import Namespace
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.testclient import TestClient

from monitor.alerting.config import AlertingConfig
from monitor.app import build_store_features
from monitor.slo.commands import cmd_slo
from monitor.slo.config import SloConfig
from monitor.store.config import StoreConfig
from probes.base import Status, SystemClock
from tests.history.history_helpers import T0, FakeClock, FullStore
from tests.slo.slo_helpers import run

P, F = Status.PASS, Status.FAIL


async def test_api_and_page_show_attainment_budget_and_burn(tmp_path: Path) -> None:
    """Ten failed runs in the last hour of a day: /api/v1/slo and the page say page-worthy burn;
    the SLO's pseudo-probe joins auth's incident without becoming a probe card."""
    clock = FakeClock(T0)
    bundle = build_store_features(
        StoreConfig(url=f"sqlite:///{tmp_path}/a.db"),
        AlertingConfig(),
        {"auth": [], "slo:auth": ["auth"]},
        CollectorRegistry(),
        clock,
        environment="test",
        slos=[SloConfig(probe="auth", objective=99.5), SloConfig(name="idle", probe="mlflow", objective=99)],
    )
    for minute in range(1440):
        status = F if minute >= 1430 else P
        result = run("auth", clock.now(), P, status, P if status is P else Status.SKIPPED)
        for sink in bundle.sinks:
            await sink.handle(result)
        clock.advance(60)
    assert bundle.history is not None
    assert await bundle.history.flush(30)
    assert bundle.slo is not None
    await bundle.slo.evaluate()  # two evaluations in a row: the default failure threshold
    clock.advance(60)
    await bundle.slo.evaluate()
    assert bundle.incidents is not None
    assert await bundle.incidents.flush(10)
    client = TestClient(Starlette(routes=bundle.routes))
    body = client.get("/api/v1/slo").json()
    auth, idle = body["slos"]
    assert (auth["slo"], auth["good"], auth["bad"]) == ("auth", 1430, 10)
    assert auth["attainment"] == pytest.approx(1430 / 1440)
    assert auth["budget_remaining"] == pytest.approx(1 - (10 / 1440) / 0.005)
    assert auth["burn_rates"]["5m"] == pytest.approx(200.0)
    assert auth["state"] == "page"
    # 1h/5m: 10/60 and 5/5 burn >= 14.4x; 6h/30m: 10/360 = 2.8 % < 6 x 0.5 %; 1d/2h: 0.69 % < 1.5 %;
    # 3d/6h: the day held (0.69 %) and 6 h (2.8 %) both >= 1x 0.5 %.
    assert [a["firing"] for a in auth["alerts"]] == [True, False, False, True]
    assert (idle["state"], idle["attainment"], idle["budget_remaining"]) == ("no data", None, None)
    page = client.get("/").text
    assert "id='slos'" in page
    assert "data-slo='auth' data-state='page'" in page
    assert "99.306 %" in page  # attainment
    assert "data-probe='slo:auth'" not in page  # a pseudo-probe is not a probe card
    assert "slo:auth" in page  # ... but is listed in auth's incident
    await bundle.close()


def test_synthmon_slo_prints_a_table_and_json(tmp_path: Path) -> None:
    """`synthmon slo` reads the store named by the config: one row per SLO, or JSON."""
    db = tmp_path / "c.db"
    store = FullStore.open(f"sqlite:///{db}")
    now = SystemClock().now()
    store.append_runs(
        [run("auth", now - timedelta(minutes=m), P, F if m <= 3 else P, P) for m in range(1, 121)]
    )
    store.close()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"environment: t\nstore: {{url: 'sqlite:///{db}'}}\n"
        "probes:\n  - {name: auth, kind: http, options: {url: 'http://127.0.0.1:1/'}}\n"
        "slos:\n  - {probe: auth, objective: 99.5}\n"
    )
    out, err = io.StringIO(), io.StringIO()
    assert cmd_slo(Namespace(config=str(config), json=False), out, err) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == f"store: sqlite:///{db}"
    assert lines[1].split()[:6] == ["SLO", "OBJECTIVE", "WINDOW", "ATTAINMENT", "BUDGET_LEFT", "STATE"]
    # 3 of 120 failed: 2.5 % errors, 5x the 0.5 % budget; the hour (5 %) is under 14.4x, the 2 h
    # and the day over 3x: a ticket, not a page.
    assert lines[2].split()[:6] == ["auth", "99.5%", "30d", "97.500%", "-400.0%", "ticket"]
    out = io.StringIO()
    assert cmd_slo(Namespace(config=str(config), json=True), out, err) == 0
    (slo,) = json.loads(out.getvalue())["slos"]
    assert (slo["good"], slo["bad"], slo["state"]) == (117, 3, "ticket")
