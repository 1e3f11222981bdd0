"""Burn-rate incidents through the real incident sink and SQLite store: an SLO burning while its
probe's incident is open joins that thread; burning on its own, it opens one; both resolve."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig, RuleOverride
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.sink import IncidentSink
from monitor.slo.config import SloConfig
from monitor.slo.service import SloMetrics, SloService
from monitor.store.metrics import StoreMetrics
from probes.base import Status
from tests.history.history_helpers import T0, FakeClock, FullStore
from tests.slo.slo_helpers import run

P, F = Status.PASS, Status.FAIL


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FullStore]:
    """A migrated SQLite store holding history and incidents, as the daemon has."""
    s = FullStore.open(f"sqlite:///{tmp_path}/slo.db")
    try:
        yield s
    finally:
        s.close()


class Rig:
    """auth probing once a minute into history and the incident sink, with its SLO evaluated."""

    def __init__(self, store: FullStore, alerting: AlertingConfig) -> None:
        self.store = store
        self.clock = FakeClock(T0)
        self.registry = CollectorRegistry()
        deps = {"auth": [], "slo:auth": ["auth"]}
        self.sink = IncidentSink(
            store.alerting,
            alerting,
            deps,
            self.clock,
            AlertingMetrics(self.registry),
            StoreMetrics(self.registry),
        )
        slo = SloConfig(probe="auth", objective=99.5)
        self.slo = SloService(
            [slo], store.history, self.clock, SloMetrics(self.registry), feed=self.sink.handle
        )

    def backfill(self, days: int) -> None:
        """``days`` of passing runs, once a minute, straight into history (already judged)."""
        start = self.clock.now()
        self.store.append_runs(
            [run("auth", start + timedelta(minutes=m), P, P, P) for m in range(days * 1440)]
        )
        self.clock.advance(days * 86400)

    async def minute(self, status: Status) -> None:
        """One run of auth (stored and judged), then one SLO evaluation, then a minute passes."""
        result = run("auth", self.clock.now(), P, status, P if status is P else Status.SKIPPED)
        self.store.append_runs([result])
        await self.sink.handle(result)
        assert await self.sink.flush(10)
        await self.slo.evaluate()
        assert await self.sink.flush(10)
        self.clock.advance(60)

    def outbox(self) -> list[dict[str, Any]]:
        return [json.loads(str(row["payload"])) for row in self.store.outbox_rows()]


async def test_a_burn_joins_the_probe_incident_and_resolves_after_it(store: FullStore) -> None:
    """auth pages first; its SLO's fast burn joins auth's thread (no second page); after recovery
    auth recovers; the SLO resolves once its 5-minute window is clear of failures (and two
    evaluations agree, the default success threshold)."""
    rig = Rig(store, AlertingConfig())
    rig.backfill(days=3)  # so the day- and 3-day-long ticket windows hold what production has
    await rig.minute(P)
    assert rig.outbox() == []
    for _ in range(8):
        await rig.minute(F)
    resolved_after = None
    for minute in range(1, 15):
        await rig.minute(P)
        if resolved_after is None and rig.outbox()[-1]["kind"] == "resolved":
            resolved_after = minute
    # Passing minutes 1-5 fill the 5-minute window; the 6th and 7th evaluations pass: resolved.
    assert resolved_after == 7
    events = [(e["kind"], e["probe"], e["incident_probe"]) for e in rig.outbox()]
    assert events == [
        ("opened", "auth", "auth"),
        ("joined", "slo:auth", "auth"),
        ("recovered", "auth", "auth"),
        ("resolved", "slo:auth", "auth"),
    ]
    joined = rig.outbox()[1]
    assert joined["cause"] == "error_budget_burn"
    assert joined["message"].startswith("auth is burning its 30-day error budget 14.4× too fast: 1 h at ")
    assert "5 min at 200.0×" in joined["message"]
    assert joined["message"].endswith("of the budget left")


async def test_a_burn_without_a_probe_incident_opens_its_own(store: FullStore) -> None:
    """When the probe itself does not page (a high failure threshold), the SLO's burn does."""
    alerting = AlertingConfig(probes={"auth": RuleOverride(failure_threshold=100)})
    rig = Rig(store, alerting)
    rig.backfill(days=3)
    for _ in range(8):
        await rig.minute(F)
    events = [(e["kind"], e["probe"], e["incident_probe"]) for e in rig.outbox()]
    assert events == [("opened", "slo:auth", "slo:auth")]
    assert rig.outbox()[0]["summary"]["title"] == "Error budget burning too fast"
    burn = rig.registry.get_sample_value("synthmon_slo_burn_rate", {"slo": "auth", "window": "5m"})
    assert burn == pytest.approx(200.0)  # 5 of 5 runs failed against a 0.5 % budget
    left = rig.registry.get_sample_value("synthmon_slo_error_budget_remaining_ratio", {"slo": "auth"})
    # The last evaluation ran as the 8th failing run started: 7 failed of 3 days + 7 runs.
    assert left == pytest.approx(1 - (7 / (3 * 1440 + 7)) / 0.005)


async def test_no_runs_is_no_data_and_feeds_nothing(store: FullStore) -> None:
    """Before any run the SLO has no data: no series, no pseudo-run, no incident state."""
    rig = Rig(store, AlertingConfig())
    statuses = await rig.slo.evaluate()
    assert statuses is not None
    assert statuses[0].state == "no data"
    assert rig.registry.get_sample_value("synthmon_slo_attainment_ratio", {"slo": "auth"}) is None
    assert rig.registry.get_sample_value("synthmon_slo_objective_ratio", {"slo": "auth"}) == pytest.approx(
        0.995
    )
    assert store.alerting.incident_states() == {}


async def test_one_zone_failing_does_not_page_through_the_slo_a_platform_burn_does(store: FullStore) -> None:
    """Three locations on one store, each with its incident sink and SLO evaluation. Only c fails:
    the budget burns overall, but the pairs' short windows are each location's own, so only c
    reports a burn and the quorum (2) holds the page. Then all three fail: one SLO incident."""
    from dataclasses import replace

    from monitor.alerting.config import QuorumConfig

    clock = FakeClock(T0)
    metrics = AlertingMetrics(CollectorRegistry())
    alerting = AlertingConfig(
        probes={"auth": RuleOverride(failure_threshold=1000)},  # only the SLO's burn may page here
        quorum=QuorumConfig(min_locations=2, window=120),
    )
    names = ("a", "b", "c")
    sinks = {
        n: IncidentSink(
            store.alerting,
            alerting,
            {"auth": [], "slo:auth": ["auth"]},
            clock,
            metrics,
            StoreMetrics(CollectorRegistry()),
            location=n,
        )
        for n in names
    }
    slos = {
        n: SloService(
            [SloConfig(probe="auth", objective=99.5)],
            store.history,
            clock,
            SloMetrics(CollectorRegistry()),
            feed=sinks[n].handle,
            location=n,
        )
        for n in names
    }
    store.append_runs(
        [
            replace(run("auth", T0 + timedelta(minutes=m), P, P, P), location=n)
            for m in range(1440)
            for n in names
        ]
    )
    clock.advance(86400)

    async def minute(failing: set[str]) -> None:
        for n in names:
            status = F if n in failing else P
            result = replace(run("auth", clock.now(), P, status, P), location=n)
            store.append_runs([result])
            await sinks[n].handle(result)
        for n in names:
            await slos[n].evaluate()
            assert await sinks[n].flush(10)
        clock.advance(60)

    def burns() -> list[tuple[str, str]]:
        return [
            (str(e["kind"]), str(e["probe"]))
            for e in (json.loads(str(row["payload"])) for row in store.outbox_rows())
            if e["probe"] == "slo:auth"
        ]

    for _ in range(30):  # a third of the runs fail for half an hour: a 66x burn overall
        await minute({"c"})
    statuses = slos["c"].recent(clock.now())
    assert statuses[0].state == "page"  # c sees its own burn ...
    assert slos["a"].recent(clock.now())[0].state != "page"  # ... a does not
    assert burns() == []
    for _ in range(6):
        await minute({"a", "b", "c"})
    assert burns() == [("opened", "slo:auth")]
