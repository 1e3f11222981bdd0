"""Correlation: one outage, one incident. Sequences of runs across probes through the real incident
sink and SQLite store, and the pure parts (dependency closure, root cause, summary) by table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from monitor.alerting.base import EventKind
from monitor.alerting.config import AlertingConfig, CorrelationConfig, IncidentRule
from monitor.alerting.correlation import ancestors, correlate, descendants, summarize
from monitor.alerting.incidents import IncidentState, Phase
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.sink import IncidentSink
from monitor.store.metrics import StoreMetrics
from probes.base import Diagnosis, Status
from tests.history.history_helpers import T0, FakeClock, FullStore, result

#: The shipped config's dependency chain (see config.yaml), plus a probe nothing depends on.
DEPS: dict[str, list[str]] = {
    "alb_health": [],
    "auth": ["alb_health"],
    "mlflow_api": ["auth", "alb_health"],
    "artifact_roundtrip": ["auth", "mlflow_api"],
    "registration": ["auth", "mlflow_api", "artifact_roundtrip"],
    "billing": [],
}

CAUSES = {
    "404": Diagnosis(
        cause="artifact_route_not_deployed",
        hint="the proxy does not route the artifact API",
        action="Deploy the artifact route on the registry proxy.",
    ),
    "key": Diagnosis(cause="api_key_rejected", hint="the key is rejected", action="Check the key."),
    "s3": Diagnosis(cause="artifact_store_error", hint="S3 refuses writes", action="Check the bucket."),
    "503": Diagnosis(cause="application_unavailable", hint="the service says so", action="Check it."),
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FullStore]:
    """A migrated SQLite store for one sequence."""
    s = FullStore.open(f"sqlite:///{tmp_path}/c.db")
    try:
        yield s
    finally:
        s.close()


def _run(token: str, probe: str, at: Any) -> Any:
    """``P`` passes; ``F:step:cause`` fails at ``step`` with the diagnosis named in :data:`CAUSES`."""
    if token == "P":
        return result(probe, Status.PASS, at)
    _, step, cause = [*token.split(":"), "", ""][:3]
    return result(probe, Status.FAIL, at, step=step or "request", diagnosis=CAUSES.get(cause))


async def _play(
    store: FullStore,
    rounds: list[str],
    *,
    rule: IncidentRule | None = None,
    window: float = 900.0,
    one_at_a_time: bool = False,
    apart_s: float = 60.0,
) -> list[tuple[str, str, str]]:
    """Feed rounds (``probe=token`` separated by spaces, ``apart_s`` apart); return the outbox as
    ``(kind, probe, incident owner)`` in order. A round's results are evaluated together (one
    store transaction), or each alone with ``one_at_a_time``."""
    clock = FakeClock(T0)
    registry = CollectorRegistry()
    config = AlertingConfig(
        rules=rule or IncidentRule(failure_threshold=1, success_threshold=1),
        correlation=CorrelationConfig(window=window),
    )
    sink = IncidentSink(store, config, DEPS, clock, AlertingMetrics(registry), StoreMetrics(registry))
    for line in rounds:
        for item in line.split():
            probe, _, token = item.partition("=")
            await sink.handle(_run(token, probe, clock.now()))
            if one_at_a_time:
                assert await sink.flush(10)
        assert await sink.flush(10)
        clock.advance(apart_s)
    out = []
    for row in store.outbox_rows():
        event = json.loads(str(row["payload"]))
        out.append((event["kind"], event["probe"], event["incident_probe"]))
    return out


# (id, rounds, expected outbox (kind, probe, owner)), failure and success thresholds 1.
SEQUENCES: list[tuple[str, list[str], list[tuple[str, str, str]]]] = [
    (
        "independent-failures-separate-incidents",
        ["billing=F:charge:s3 auth=F:validate:key", "billing=P auth=P"],
        [
            ("opened", "billing", "billing"),
            ("opened", "auth", "auth"),
            ("resolved", "billing", "billing"),
            ("resolved", "auth", "auth"),
        ],
    ),
    (
        "upstream-first-dependents-join",
        ["auth=F:validate:key", "artifact_roundtrip=F:upload:key registration=F:log_model:key"],
        [
            ("opened", "auth", "auth"),
            ("joined", "artifact_roundtrip", "auth"),
            ("joined", "registration", "auth"),
        ],
    ),
    (
        "downstream-first-upstream-joins-its-thread",
        ["registration=F:log_model:404", "auth=F:validate:key"],
        [("opened", "registration", "registration"), ("joined", "auth", "registration")],
    ),
    (
        "resolves-only-when-every-member-recovered",
        [
            "auth=F:validate:key artifact_roundtrip=F:upload:key",
            "auth=P artifact_roundtrip=F:upload:key",
            "artifact_roundtrip=P",
        ],
        [
            ("opened", "auth", "auth"),
            ("joined", "artifact_roundtrip", "auth"),
            ("recovered", "auth", "auth"),
            ("resolved", "artifact_roundtrip", "auth"),
        ],
    ),
    (
        "member-stays-in-thread-after-the-opener-recovers",
        [
            "auth=F:validate:key artifact_roundtrip=F:upload:key",
            "auth=P artifact_roundtrip=F:upload:key",
            "artifact_roundtrip=F:upload:key",
        ],
        [
            ("opened", "auth", "auth"),
            ("joined", "artifact_roundtrip", "auth"),
            ("recovered", "auth", "auth"),
        ],
    ),
    (
        "same-specific-cause-joins-without-dependency",
        ["artifact_roundtrip=F:upload:404", "billing=F:charge:404"],
        [("opened", "artifact_roundtrip", "artifact_roundtrip"), ("joined", "billing", "artifact_roundtrip")],
    ),
    (
        "generic-cause-never-correlates-alone",
        ["artifact_roundtrip=F:upload:503", "billing=F:charge:503"],
        [("opened", "artifact_roundtrip", "artifact_roundtrip"), ("opened", "billing", "billing")],
    ),
    (
        "different-cause-unrelated-probe-pages-apart",
        ["artifact_roundtrip=F:upload:404", "billing=F:charge:s3"],
        [("opened", "artifact_roundtrip", "artifact_roundtrip"), ("opened", "billing", "billing")],
    ),
    (
        "seed-outage-one-thread",
        [
            "alb_health=F:registry_health:503",
            "artifact_roundtrip=F:upload:404 registration=F:log_model:404",
            "alb_health=P",
            "artifact_roundtrip=P registration=P",
        ],
        [
            ("opened", "alb_health", "alb_health"),
            ("joined", "artifact_roundtrip", "alb_health"),
            ("joined", "registration", "alb_health"),
            ("recovered", "alb_health", "alb_health"),
            ("recovered", "artifact_roundtrip", "alb_health"),
            ("resolved", "registration", "alb_health"),
        ],
    ),
]


@pytest.mark.parametrize(("rounds", "expected"), [s[1:] for s in SEQUENCES], ids=[s[0] for s in SEQUENCES])
async def test_correlated_sequence(store: FullStore, rounds: list[str], expected: list[Any]) -> None:
    """Each sequence of runs (thresholds 1) yields exactly these incident events, in this order."""
    assert await _play(store, rounds) == expected


#: Rounds where one probe has several results in one batch: the later ones see the earlier's state.
REPEATS = [
    "auth=P",
    "auth=F:validate:key auth=P",
    "auth=F:validate:key auth=P auth=F:validate:key",
    "auth=P artifact_roundtrip=F:upload:404 auth=F:validate:key artifact_roundtrip=P",
    "billing=F:charge:s3 billing=F:charge:s3 auth=P billing=P",
]


@pytest.mark.parametrize("apart_s", [60.0, 5.0], ids=["minutes-apart", "seconds-apart"])
@pytest.mark.parametrize(
    "rounds", [s[1] for s in SEQUENCES] + [REPEATS], ids=[s[0] for s in SEQUENCES] + ["repeats-in-a-batch"]
)
async def test_a_batch_decides_as_its_results_would_one_by_one(
    tmp_path: Path, rounds: list[str], apart_s: float
) -> None:
    """A batch of results is one store transaction; its outcome (every event, in order) is the one
    of the same results evaluated one at a time, each after the ones before it. Seconds apart, a
    good run of a probe known to be fine skips its transaction, but not after a result of the same
    probe earlier in its batch."""
    together, alone = (
        FullStore.open(f"sqlite:///{tmp_path}/a.db"),
        FullStore.open(f"sqlite:///{tmp_path}/b.db"),
    )
    try:
        batched = await _play(together, rounds, apart_s=apart_s)
        assert batched == await _play(alone, rounds, one_at_a_time=True, apart_s=apart_s)
        assert batched  # every sequence pages at least once
    finally:
        together.close()
        alone.close()


async def test_a_result_the_store_rejects_is_dropped_alone(
    store: FullStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result whose transition fails for another reason than an outage (a bug, bad data) rolls
    its batch back; the batch is then evaluated one result at a time, and only that one is dropped
    (counted), so it cannot hold the queue or take the others' pages with it."""
    import monitor.alerting.sink as sink_module

    real = sink_module.transition

    def broken_for_billing(state: IncidentState, *args: Any, **kwargs: Any) -> Any:
        if state.probe == "billing":
            raise ValueError("bad data")
        return real(state, *args, **kwargs)

    monkeypatch.setattr(sink_module, "transition", broken_for_billing)
    clock, registry = FakeClock(T0), CollectorRegistry()
    config = AlertingConfig(rules=IncidentRule(failure_threshold=1, success_threshold=1))
    sink = IncidentSink(store, config, DEPS, clock, AlertingMetrics(registry), StoreMetrics(registry))
    for probe in ("auth", "billing", "alb_health"):
        await sink.handle(_run("F:request:503", probe, clock.now()))
    assert await sink.flush(10)
    opened = [json.loads(str(r["payload"]))["probe"] for r in store.outbox_rows()]
    assert sorted(opened) == ["alb_health", "auth"]
    assert registry.get_sample_value("synthmon_incident_buffer_dropped_total") == 1
    errors = {"operation": "incident_transition"}
    assert registry.get_sample_value("synthmon_store_errors_total", errors) == 1


async def test_flapping_member_stays_in_the_thread_quietly(store: FullStore) -> None:
    """With a success threshold of 2, one good run of a member between failures changes nothing."""
    rounds = [
        "auth=F:validate:key artifact_roundtrip=F:upload:key",
        "artifact_roundtrip=P",
        "artifact_roundtrip=F:upload:key",
        "artifact_roundtrip=P",
        "artifact_roundtrip=F:upload:key",
    ]
    got = await _play(store, rounds, rule=IncidentRule(failure_threshold=1, success_threshold=2))
    assert got == [("opened", "auth", "auth"), ("joined", "artifact_roundtrip", "auth")]


async def test_cause_correlation_respects_the_window(store: FullStore) -> None:
    """The same specific cause 20 minutes apart, with a 15-minute window, is two incidents."""
    rounds = ["artifact_roundtrip=F:upload:404"] + [""] * 19 + ["billing=F:charge:404"]
    got = await _play(store, rounds, window=900)
    assert got == [("opened", "artifact_roundtrip", "artifact_roundtrip"), ("opened", "billing", "billing")]


async def test_silenced_member_holds_only_its_own_page(store: FullStore) -> None:
    """A silenced upstream opens no thread; its dependent is held with it, then both page as one."""
    store.add_silence(
        probe="auth", starts_at=T0, ends_at=T0 + timedelta(seconds=90), reason="deploy", created_by="t"
    )
    got = await _play(
        store,
        [
            "auth=F:validate:key artifact_roundtrip=F:upload:key",
            "auth=F:validate:key artifact_roundtrip=F:upload:key",
            "auth=F:validate:key artifact_roundtrip=F:upload:key",
        ],
    )
    assert got == [("opened", "auth", "auth"), ("joined", "artifact_roundtrip", "auth")]


async def test_summary_names_root_cause_members_and_action(store: FullStore) -> None:
    """The thread root's summary after the seed outage: the artifact route, every affected step."""
    await _play(
        store,
        [
            "alb_health=F:registry_health:503",
            "artifact_roundtrip=F:upload:404 registration=F:log_model:404",
        ],
    )
    last = json.loads(str(store.outbox_rows()[-1]["payload"]))["summary"]
    assert last["title"] == "Artifact storage not deployed"
    assert last["cause"] == "artifact_route_not_deployed"
    assert last["action"] == CAUSES["404"].action
    where = {(m["probe"], m["step"], m["active"]) for m in last["members"]}
    assert where == {
        ("alb_health", "registry_health", True),
        ("artifact_roundtrip", "upload", True),
        ("registration", "log_model", True),
    }


async def test_resolution_lists_everything_affected(store: FullStore) -> None:
    """The last recovery resolves the incident; its summary lists every member, none failing."""
    await _play(
        store,
        [
            "auth=F:validate:key artifact_roundtrip=F:upload:key",
            "auth=P",
            "artifact_roundtrip=P",
        ],
    )
    rows = [json.loads(str(r["payload"])) for r in store.outbox_rows()]
    resolved = rows[-1]
    assert resolved["kind"] == EventKind.RESOLVED.value
    summary = resolved["summary"]
    assert summary["resolved"] is True
    assert {m["probe"] for m in summary["members"]} == {"auth", "artifact_roundtrip"}
    assert not any(m["active"] for m in summary["members"])
    assert summary["since"] == T0.isoformat()
    assert store.incidents(open_only=True, limit=10) == []


# --- pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probe", "up", "down"),
    [
        ("registration", {"auth", "mlflow_api", "artifact_roundtrip", "alb_health"}, set()),
        ("auth", {"alb_health"}, {"mlflow_api", "artifact_roundtrip", "registration"}),
        ("billing", set(), set()),
    ],
    ids=["leaf", "middle", "alone"],
)
def test_dependency_closure(probe: str, up: set[str], down: set[str]) -> None:
    """Dependencies are followed transitively in both directions."""
    assert (ancestors(probe, DEPS), descendants(probe, DEPS)) == (up, down)


def _open(
    probe: str, incident: str, owner: str, cause: str | None, *, notified: bool = True
) -> IncidentState:
    return IncidentState(
        probe,
        phase=Phase.OPEN,
        incident_id=incident,
        incident_probe=owner,
        since=T0,
        opened_at=T0,
        notified=notified,
        cause=cause,
        step="s",
    )


@pytest.mark.parametrize(
    ("probe", "cause", "others", "expected"),
    [
        (
            "artifact_roundtrip",
            None,
            {"auth": _open("auth", "i1", "auth", "api_key_rejected")},
            ("i1", False),
        ),
        ("auth", None, {"registration": _open("registration", "i2", "registration", None)}, ("i2", False)),
        ("billing", "artifact_route_not_deployed", {"auth": _open("auth", "i1", "auth", "x")}, None),
        (
            "billing",
            "artifact_route_not_deployed",
            {
                "artifact_roundtrip": _open(
                    "artifact_roundtrip", "i3", "artifact_roundtrip", "artifact_route_not_deployed"
                )
            },
            ("i3", False),
        ),
        (
            "artifact_roundtrip",
            None,
            {"auth": _open("auth", "i4", "auth", None, notified=False)},
            ("i4", True),
        ),
    ],
    ids=["upstream-open", "downstream-open", "unrelated", "same-cause", "held-upstream"],
)
def test_correlate_picks_the_incident(
    probe: str, cause: str | None, others: dict[str, IncidentState], expected: tuple[str, bool] | None
) -> None:
    """A new failure joins the related open incident (held when nobody was told yet), or none."""
    target = correlate(
        IncidentState(probe), cause=cause, began=T0, others=others, deps=DEPS, config=CorrelationConfig()
    )
    assert (None if target is None else (target.incident_id, target.held)) == expected


def test_root_cause_prefers_the_specific_cause_most_members_share() -> None:
    """An ALB health 503 beside two artifact 404s: the artifact route is the root cause."""
    members = [
        _open("alb_health", "i", "alb_health", "application_unavailable"),
        _open("artifact_roundtrip", "i", "alb_health", "artifact_route_not_deployed"),
        _open("registration", "i", "alb_health", "artifact_route_not_deployed"),
    ]
    summary = summarize("i", members, [], DEPS, fallback_since=T0)
    assert (summary.title, summary.root_probe) == ("Artifact storage not deployed", "artifact_roundtrip")


def test_root_cause_falls_back_to_the_most_upstream_member() -> None:
    """With no shared cause, the member furthest upstream is the root."""
    members = [
        _open("registration", "i", "registration", "model_version_not_ready"),
        _open("auth", "i", "registration", "api_key_rejected"),
    ]
    summary = summarize("i", members, [], DEPS, fallback_since=T0)
    assert summary.root_probe == "auth"


async def test_good_runs_of_a_fine_probe_skip_the_transaction(store: FullStore) -> None:
    """A healthy probe costs one transaction per minute, not one per run; a failure always transacts."""
    clock = FakeClock(T0)
    registry = CollectorRegistry()
    config = AlertingConfig(rules=IncidentRule(failure_threshold=1, success_threshold=1))
    calls: list[str] = []
    real = store.alerting.transitions

    def counting(steps: Any, *args: Any) -> Any:
        calls.extend(step.probe for step in steps)
        return real(steps, *args)

    store.alerting.transitions = counting  # type: ignore[method-assign]
    sink = IncidentSink(
        store.alerting, config, DEPS, clock, AlertingMetrics(registry), StoreMetrics(registry)
    )
    for _ in range(10):  # ten good runs within a minute: the first one transacts, the rest are known fine
        await sink.handle(result("auth", Status.PASS, clock.now()))
        assert await sink.flush(10)
        clock.advance(5)
    assert calls == ["auth"]
    clock.advance(60)  # the known state is too old now: read it again
    await sink.handle(result("auth", Status.PASS, clock.now()))
    await sink.handle(_run("F:validate:key", "auth", clock.now()))
    assert await sink.flush(10)
    assert calls == ["auth", "auth", "auth"]
    assert registry.get_sample_value("synthmon_incident_transitions_skipped_total") == 9
    assert [json.loads(str(r["payload"]))["kind"] for r in store.outbox_rows()] == ["opened"]
