"""The incident state machine as a table of run sequences, plus the fields its events carry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.alerting.base import EventKind
from monitor.alerting.config import IncidentRule
from monitor.alerting.incidents import IncidentState, Phase, Upstream, transition
from monitor.results import ProbeResult
from probes.base import Diagnosis, Status, StepResult

T0 = datetime(2025, 7, 22, 10, 0, tzinfo=UTC)
CODES = {"P": Status.PASS, "F": Status.FAIL, "D": Status.DEGRADED, "E": Status.ERROR, "S": Status.SKIPPED}
UP = Upstream(probe="mlflow_api", incident_id="mlflow_api-r0")
#: The same upstream incident while a silence still holds its announcement (no thread yet).
HELD = Upstream(probe="mlflow_api", incident_id="mlflow_api-r0", held=True)


def run(token: str, at: datetime) -> tuple[ProbeResult, bool, Upstream | None]:
    """A token such as ``F/upload!^``: status, failing step, ``!`` silenced, ``^`` upstream open,
    ``~`` upstream open but held by a silence (not announced)."""
    silenced = "!" in token
    upstream = UP if "^" in token else HELD if "~" in token else None
    core = token.replace("!", "").replace("^", "").replace("~", "")
    code, _, step = core.partition("/")
    status = CODES[code]
    st = StepResult(
        name=step or "upload",
        status=status,
        http_status=404 if status is Status.FAIL else 200,
        error_class="http_status" if status is Status.FAIL else None,
    )
    res = ProbeResult(
        "artifact_roundtrip", "artifact_roundtrip", uuid.uuid4().hex[:8], at, 1.0, status, (st,), "prod"
    )
    return res, silenced, upstream


# (id, rule overrides, run tokens, expected event kinds per run ("" = none))
TABLE: list[tuple[str, dict[str, Any], str, str]] = [
    ("one-failure-below-threshold", {}, "F P", "- -"),
    ("two-failures-open", {}, "F F", "- opened"),
    ("threshold-3", {"failure_threshold": 3}, "F F F", "- - opened"),
    ("threshold-1-pages-at-once", {"failure_threshold": 1}, "F", "opened"),
    ("flapping-never-pages", {}, "F P F P F P", "- - - - - -"),
    ("two-successes-resolve", {}, "F F P P", "- opened - resolved"),
    ("failure-resets-recovery", {}, "F F P F P P", "- opened - - - resolved"),
    ("success-threshold-1", {"success_threshold": 1}, "F F P", "- opened resolved"),
    ("step-change-updates", {}, "F/a F/a F/b", "- opened updated"),
    ("same-failure-is-quiet", {}, "F/a F/a F/a F/a", "- opened - -"),
    ("reminder-after-interval", {"reminder_interval": 120}, "F F F F F", "- opened - reminder -"),
    ("reminders-off", {"reminder_interval": 0}, "F F F F F F", "- opened - - - -"),
    ("degraded-ignored-by-default", {}, "D D D", "- - -"),
    ("degraded-alerts-when-configured", {"alert_on_degraded": True}, "D D P P", "- opened - resolved"),
    ("degraded-resolves-by-default", {}, "F F D D", "- opened - resolved"),
    ("error-neither-breaks-nor-counts", {}, "F E F", "- - opened"),
    ("error-does-not-resolve", {}, "F F E E P P", "- opened - - - resolved"),
    ("error-alerts-when-configured", {"alert_on_error": True}, "E E", "- opened"),
    ("skipped-run-is-neutral", {}, "F S F", "- - opened"),
    ("silence-holds-opening", {}, "F! F!", "- -"),
    ("announced-when-silence-ends", {}, "F! F! F", "- - opened"),
    ("resolution-of-announced-sent-in-silence", {}, "F F P! P!", "- opened - resolved"),
    ("never-announced-resolves-quietly", {}, "F! F! P P", "- - - -"),
    ("silence-holds-updates", {}, "F/a F/a F/b!", "- opened -"),
    ("dependency-joins-upstream", {}, "F^ F^", "- joined"),
    ("joined-stays-quiet-on-repeat", {}, "F^ F^ F^", "- joined -"),
    ("upstream-resolved-then-own-incident", {}, "F^ F^ F", "- joined opened"),
    ("dependent-recovery-in-upstream-thread", {}, "F^ F^ P^ P^", "- joined - resolved"),
    ("upstream-opening-later-does-not-merge", {}, "F F F^", "- opened -"),
    # An upstream incident held by a silence has no thread: its dependents are held with it.
    ("held-upstream-holds-dependent", {}, "F~ F~ F~", "- - -"),
    ("held-upstream-announced-then-dependent-joins", {}, "F~ F~ F^", "- - joined"),
    ("held-upstream-joined-once-then-quiet", {}, "F~ F~ F^ F^", "- - joined -"),
    ("held-upstream-resolved-dependent-pages-own", {}, "F~ F~ F", "- - opened"),
    ("held-dependent-recovers-quietly", {}, "F~ F~ P~ P~", "- - - -"),
    ("held-dependent-recovers-quietly-after-upstream", {}, "F~ F~ P P", "- - - -"),
    ("own-silence-ends-while-upstream-held", {}, "F! F! F~ F^", "- - - joined"),
    ("held-upstream-does-not-take-own-announced-incident", {}, "F F F~", "- opened -"),
]


@pytest.mark.parametrize(("rule_kw", "tokens", "expected"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_sequence(rule_kw: dict[str, Any], tokens: str, expected: str) -> None:
    """Each run sequence produces exactly the expected events (runs are 60 s apart)."""
    rule = IncidentRule(**rule_kw)
    state = IncidentState("artifact_roundtrip")
    got: list[str] = []
    for i, token in enumerate(tokens.split()):
        now = T0 + timedelta(seconds=60 * i)
        res, silenced, upstream = run(token, now)
        state, events = transition(state, res, rule, now, upstream=upstream, silenced=silenced)
        got.append(",".join(e.kind.value for e in events) or "-")
    assert got == expected.split()


def test_table_is_large_enough() -> None:
    """The table covers at least the 20 sequences issue #5 asks for, with unique ids."""
    assert len(TABLE) >= 20
    assert len({t[0] for t in TABLE}) == len(TABLE)


def test_opened_event_carries_what_on_call_needs() -> None:
    """The opening event names step, HTTP status, diagnosis, change and the first failure's time."""
    diag = Diagnosis(
        cause="artifact route not deployed",
        hint="proxy forwards to a path MLflow does not serve",
        action="redeploy",
    )
    rule = IncidentRule()
    state = IncidentState("artifact_roundtrip")
    first = ProbeResult(
        "artifact_roundtrip",
        "artifact_roundtrip",
        "run-1",
        T0,
        1.0,
        Status.FAIL,
        (
            StepResult(
                "upload",
                Status.FAIL,
                http_status=404,
                error_class="http_status",
                message="404",
                diagnosis=diag,
            ),
        ),
        "prod",
    )
    second = ProbeResult(
        "artifact_roundtrip",
        "artifact_roundtrip",
        "run-2",
        T0 + timedelta(minutes=1),
        1.0,
        Status.FAIL,
        first.steps,
        "prod",
    )
    state, _ = transition(state, first, rule, T0)
    state, [event] = transition(state, second, rule, T0 + timedelta(minutes=1))
    assert event.kind is EventKind.OPENED
    assert (event.step, event.http_status, event.cause, event.hint, event.action) == (
        "upload",
        404,
        diag.cause,
        diag.hint,
        "redeploy",
    )
    assert (event.old_status, event.new_status, event.since, event.run_id) == ("PASS", "FAIL", T0, "run-2")
    assert event.incident_id == "artifact_roundtrip-run-2"
    assert state.phase is Phase.OPEN
    assert IncidentState.from_dict(state.to_dict()) == state


def test_joined_event_goes_to_upstream_thread_and_resolution_too() -> None:
    """A dependent probe's join and recovery events carry the upstream's incident id and owner."""
    rule = IncidentRule()
    state = IncidentState("artifact_roundtrip")
    kinds = []
    for i, token in enumerate(["F^", "F^", "P^", "P^"]):
        res, silenced, upstream = run(token, T0 + timedelta(minutes=i))
        state, events = transition(state, res, rule, res.started_at, upstream=upstream, silenced=silenced)
        for e in events:
            kinds.append(e.kind)
            assert (e.incident_id, e.incident_probe, e.owns_thread) == (UP.incident_id, "mlflow_api", False)
    assert kinds == [EventKind.JOINED, EventKind.RESOLVED]
    assert state.phase is Phase.OK


def test_held_upstream_dependent_state_points_at_upstream_incident() -> None:
    """A dependent held by its upstream's silence is open, unannounced, in the upstream's incident."""
    state = IncidentState("artifact_roundtrip")
    for i, token in enumerate(["F~", "F~"]):
        res, _, upstream = run(token, T0 + timedelta(minutes=i))
        state, events = transition(state, res, IncidentRule(), res.started_at, upstream=upstream)
        assert events == []
    assert (state.phase, state.notified) == (Phase.OPEN, False)
    assert (state.incident_id, state.incident_probe) == (HELD.incident_id, "mlflow_api")
    res, _, upstream = run("F^", T0 + timedelta(minutes=2))
    state, [event] = transition(state, res, IncidentRule(), res.started_at, upstream=upstream)
    assert (event.kind, event.incident_id, event.owns_thread) == (EventKind.JOINED, UP.incident_id, False)
    assert state.notified


def test_joined_dependent_moves_silently_to_a_new_held_upstream_incident() -> None:
    """A dependent joined to an upstream incident that ended, failing in a new held one, stays quiet."""
    rule = IncidentRule()
    state = IncidentState("artifact_roundtrip")
    for i, token in enumerate(["F^", "F^"]):
        res, _, upstream = run(token, T0 + timedelta(minutes=i))
        state, _ = transition(state, res, rule, res.started_at, upstream=upstream)
    assert state.joined
    assert state.notified
    new_held = Upstream(probe="mlflow_api", incident_id="mlflow_api-r9", held=True)
    res, _, _ = run("F", T0 + timedelta(minutes=2))
    state, events = transition(state, res, rule, res.started_at, upstream=new_held)
    assert events == []
    assert (state.incident_id, state.notified) == ("mlflow_api-r9", False)


@pytest.mark.parametrize(
    ("title", "expected"),
    [("VPN to the data centre down", "VPN to the data centre down"), ("", "Vpn tunnel down")],
    ids=["config_title", "derived_from_code"],
)
def test_event_title_is_the_diagnosis_title_else_the_cause_in_words(title: str, expected: str) -> None:
    """A config diagnosis row's own title heads the alert; without one the cause code reads as words."""
    diag = Diagnosis(cause="vpn_tunnel_down", hint="h", title=title)
    step = StepResult("health", Status.FAIL, error_class="connect_error", diagnosis=diag)
    rule = IncidentRule(failure_threshold=1)
    state = IncidentState("auth")
    result = ProbeResult("auth", "auth", "run-1", T0, 1.0, Status.FAIL, (step,), "prod")
    state, [event] = transition(state, result, rule, T0)
    assert (event.kind, event.cause, event.title) == (EventKind.OPENED, "vpn_tunnel_down", expected)
