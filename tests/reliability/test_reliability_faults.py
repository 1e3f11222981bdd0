"""The fault matrix: `synthmon run` against the sandbox platform, a fake Slack and its store, one fault
per row -- target, Slack, store and process faults -- and what must hold through each.

Every row holds to the same promises, checked over everything that happened since the row began:

- probing never stops (more runs of every probe while the fault lasts, all good again after it);
- no traceback in any log line, and no run is an ERROR: a target fault is a FAIL (or DEGRADED) with
  its specific diagnosed cause;
- no alert is lost or sent twice: nothing is left pending in the outbox, the opened events are the
  row's pages, every event marked sent is exactly one ``chat.postMessage`` that Slack accepted, and
  every reply lands in a thread opened in the row;
- every run the daemon logged as finished is in the store (except what the fault itself destroyed).

One daemon serves the rows (module scope: starting the platform and a daemon per row would cost
minutes); each row starts and ends healthy, with no open incident and the outbox drained. Rows that
restart the daemon leave the next generation running on the same config. The PostgreSQL row moves
the daemon onto PostgreSQL, so it is last.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from sandbox.core import Sandbox
from tests.alerting.alerting_e2e_daemon import wait_for
from tests.history.history_helpers import PG_SKIP_REASON, PG_URL, pg_schema_url
from tests.reliability.fault_rig import Mark, Rig, TcpProxy

Verdicts = Mapping[str, tuple[str, str | None]]

#: The paging fault of the Slack, store and process rows: one probe fails, with a known cause.
ARTIFACTS_404: Verdicts = {"artifact_roundtrip": ("FAIL", "artifact_route_not_deployed")}
ALB = ("FAIL", "alb_no_healthy_target")


@dataclass(frozen=True)
class Expect:
    """What a row must show, beyond the promises every row holds to (module docstring)."""

    #: probe -> (status, diagnosed cause) it reports while the fault lasts.
    verdicts: Verdicts = field(default_factory=dict)
    #: incidents opened, i.e. ``opened`` events queued (each one page).
    pages: int = 1
    #: events Slack refused for good: counted and logged, never retried.
    failed: int = 0
    #: attempts the page took (the opened event's ``attempts``).
    attempts: range = range(1, 2)
    #: more runs of every probe to see while the fault lasts.
    runs_while_faulted: int = 2
    #: the page Slack accepted is plain text (its blocks were refused).
    plain_page: bool = False


#: An act injects the fault, waits for its effect, removes it. It may return the mark from which
#: every finished run must be stored, when the fault itself destroyed runs before it.
Act = Callable[[Rig, Expect, Mark], Mark | None]


@dataclass(frozen=True)
class Row:
    fault: str
    act: Act
    expect: Expect


def _faulted(rig: Rig, expect: Expect, start: Mark) -> None:
    """While the fault lasts: the verdicts, probing going on, and the page decided (sent or failed)."""
    rig.wait_verdicts(start, expect.verdicts)
    rig.wait_runs(expect.runs_while_faulted)
    if expect.pages:
        rig.wait_outbox(start, "opened")


def target(fault: str) -> Act:
    """A sandbox fault, switched on for the row."""

    def act(rig: Rig, expect: Expect, start: Mark) -> None:
        rig.faults.set_faults(fault)
        _faulted(rig, expect, start)
        rig.faults.clear_faults()

    return act


def slack_answers(kind: str, times: int) -> Act:
    """The fake Slack answers the next ``times`` calls with ``kind`` while artifacts-404 pages."""

    def act(rig: Rig, expect: Expect, start: Mark) -> None:
        rig.slack.state.fail(kind, times)
        target("artifacts-404")(rig, expect, start)

    return act


def slack_unreachable(how: str) -> Act:
    """Slack hangs (timeouts) or refuses connections while artifacts-404 pages, until at least one
    attempt failed; then it is back."""

    def act(rig: Rig, expect: Expect, start: Mark) -> None:
        getattr(rig.slack, how)()
        try:
            rig.faults.set_faults("artifacts-404")
            rig.wait_verdicts(start, expect.verdicts)
            # At least one attempt failed (and the page waits for the next one).
            rig.wait_outbox(start, "opened", until=lambda r: r.state == "pending" and bool(r.last_error))
            rig.wait_runs(expect.runs_while_faulted)
        finally:
            rig.slack.restore()
        rig.wait_outbox(start, "opened")
        rig.faults.clear_faults()

    return act


def _sqlite_path(rig: Rig) -> Path:
    return Path(rig.store_url.removeprefix("sqlite:///"))


def _no_slack_since(rig: Rig, start: Mark) -> None:
    """Nothing went to Slack: with the store out, no incident transition (and so no page) happened."""
    assert rig.slack.since(start.exchanges) == []


def sqlite_locked(rig: Rig, expect: Expect, start: Mark) -> None:
    """Another writer holds the SQLite store while artifacts-404 fails; then lets go."""
    locker = sqlite3.connect(_sqlite_path(rig), isolation_level=None, timeout=30)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        rig.faults.set_faults("artifacts-404")
        rig.wait_verdicts(start, expect.verdicts)
        rig.wait_runs(3)
        wait_for(lambda: (rig.metric("synthmon_history_buffer_depth") or 0) >= 1, "runs waiting in memory")
        _no_slack_since(rig, start)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    rig.wait_outbox(start, "opened")
    rig.faults.clear_faults()


def sqlite_deleted(rig: Rig, expect: Expect, start: Mark) -> Mark:
    """The SQLite file (and its WAL) deleted under the running daemon; then artifacts-404 must page."""
    db = _sqlite_path(rig)
    before = rig.metric("synthmon_store_file_changes_total", reason="deleted") or 0
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    kept = rig.mark()  # the runs stored before this went with the file

    def recreated() -> bool:
        counted = rig.metric("synthmon_store_file_changes_total", reason="deleted")
        return counted == before + 1 and db.exists()

    wait_for(recreated, "the deletion noticed, counted and the store recreated")
    target("artifacts-404")(rig, expect, start)
    return kept


def postgres_unreachable(rig: Rig, expect: Expect, start: Mark) -> Mark:
    """The daemon moves onto PostgreSQL behind a proxy; the proxy stops while artifacts-404 fails
    (every connection dropped, new ones refused), then starts again on the same port."""
    assert PG_URL is not None
    url = rig.stack.enter_context(pg_schema_url(PG_URL))
    parsed = make_url(url)
    proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
    rig.stack.callback(proxy.stop)
    assert rig.daemon.stop() == 0
    rig.store_url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    rig.read_url = url
    rig.start()
    kept = rig.mark()
    wait_for(lambda: rig.metric("synthmon_store_ready") == 1, "the PostgreSQL store ready")
    rig.wait_runs(2)

    proxy.stop()
    rig.faults.set_faults("artifacts-404")
    rig.wait_verdicts(start, expect.verdicts)
    rig.wait_runs(3)
    wait_for(lambda: (rig.metric("synthmon_history_buffer_depth") or 0) >= 1, "runs waiting in memory")
    _no_slack_since(rig, start)
    proxy.start()
    wait_for(lambda: rig.metric("synthmon_store_ready") == 1, "the store back", timeout_s=60)
    rig.wait_outbox(start, "opened")
    rig.faults.clear_faults()
    return kept


def sigterm_drain(rig: Rig, expect: Expect, start: Mark) -> None:
    """SIGTERM while a run is in flight (held open by the gate target, released once the daemon is
    stopping): the run finishes during the drain, is stored, and the daemon exits 0."""
    rig.gate.hold()
    try:
        wait_for(rig.gate.arrived.is_set, "a gate run in flight")
        rig.daemon.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: rig.records(start, "daemon.stopping"), "the daemon to start stopping")
    finally:
        rig.gate.release()
    assert rig.daemon.proc.wait(timeout=60) == 0
    [draining] = rig.records(start, "scheduler.draining")
    assert draining["in_flight"] >= 1
    [stopped] = rig.records(start, "daemon.stopped")
    assert stopped["drained"] is True
    records = rig.records(start)
    stopping = next(i for i, r in enumerate(records) if r.get("event") == "daemon.stopping")
    drained = [r for r in records[stopping:] if r.get("event") == "probe.finished" and r["probe"] == "gate"]
    assert [r["status"] for r in drained] == ["PASS"]
    rig.start()


def sigkill_mid_incident(rig: Rig, expect: Expect, start: Mark) -> Mark:
    """SIGKILL with the incident open and paged, restart on the same store: the next daemon keeps
    failing quietly (no second page) and resolves in the original thread."""
    rig.faults.set_faults("artifacts-404")
    rig.wait_verdicts(start, expect.verdicts)
    rig.wait_outbox(start, "opened")
    rig.daemon.proc.kill()
    rig.daemon.proc.wait(timeout=10)
    rig.start()
    kept = rig.mark()  # runs finished in the killed daemon's last moments may die with it
    rig.wait_runs(2)
    assert {r["status"] for r in rig.finished(kept, "artifact_roundtrip")} == {"FAIL"}
    rig.faults.clear_faults()
    return kept


RETRIED = range(2, 1000)  # as many attempts as the outage lasted, more than one

ROWS = [
    # --- target faults: a FAIL with the specific cause, one incident (correlated), never ERROR --------
    Row(
        "auth-down",
        target("auth-down"),
        Expect(
            {
                "alb_health": ALB,
                "auth": ALB,
                "mlflow_api": ("FAIL", "auth_upstream_unavailable"),
                "artifact_roundtrip": ("FAIL", "auth_upstream_unavailable"),
            }
        ),
    ),
    # The registry's ALB has no target: what goes through it fails; the auth service is fine.
    Row(
        "alb-no-healthy-target",
        target("alb-no-healthy-target"),
        Expect(
            {
                "alb_health": ALB,
                "auth": ("PASS", None),
                "mlflow_api": ALB,
                "artifact_roundtrip": ALB,
            }
        ),
    ),
    Row("artifacts-404", target("artifacts-404"), Expect(ARTIFACTS_404)),
    Row(
        "mlflow-down",
        target("mlflow-down"),
        Expect(dict.fromkeys(("mlflow_api", "artifact_roundtrip"), ("FAIL", "mlflow_unreachable"))),
    ),
    # Slow, not broken: DEGRADED (over the step budget), which does not page.
    Row(
        "mlflow-slow",
        target("mlflow-slow"),
        Expect(
            dict.fromkeys(("mlflow_api", "artifact_roundtrip"), ("DEGRADED", None)),
            pages=0,
            runs_while_faulted=1,
        ),
    ),
    # --- Slack faults while artifacts-404 pages: delivered once, or refused for good and counted -----
    # (tests/alerting/test_alerting_e2e.py also pages through two 500s, checking the retried bodies.)
    Row("slack-500", slack_answers("500", 2), Expect(ARTIFACTS_404, attempts=range(3, 4))),
    # slack-sdk waits the Retry-After second and retries within the same attempt.
    Row("slack-429", slack_answers("429", 1), Expect(ARTIFACTS_404)),
    # A bad token or channel cannot heal by retrying: the page fails at once; the resolution, with no
    # thread to reply in, is still posted.
    Row("slack-invalid_auth", slack_answers("invalid_auth", 1), Expect(ARTIFACTS_404, failed=1)),
    Row("slack-channel_not_found", slack_answers("channel_not_found", 1), Expect(ARTIFACTS_404, failed=1)),
    # Blocks refused: the same page once more as plain text, in the same attempt.
    Row("slack-invalid_blocks", slack_answers("invalid_blocks", 1), Expect(ARTIFACTS_404, plain_page=True)),
    # The request never reaches Slack. (Slack posting a message whose answer is then lost is the one
    # case that sends twice: delivery is at-least-once there, by design -- see monitor/alerting/outbox.py.)
    Row("slack-timeout", slack_unreachable("hang"), Expect(ARTIFACTS_404, attempts=RETRIED)),
    Row("slack-connection-refused", slack_unreachable("refuse"), Expect(ARTIFACTS_404, attempts=RETRIED)),
    # --- store faults: probing goes on, results wait in memory, the page comes once the store is back --
    Row("sqlite-locked", sqlite_locked, Expect(ARTIFACTS_404)),
    Row("sqlite-file-deleted", sqlite_deleted, Expect(ARTIFACTS_404)),
    # --- process faults ------------------------------------------------------------------------------
    Row("sigterm-drain", sigterm_drain, Expect(pages=0)),
    Row("sigkill-mid-incident", sigkill_mid_incident, Expect(ARTIFACTS_404)),
    # Last: it leaves the daemon on PostgreSQL.
    Row("postgres-unreachable", postgres_unreachable, Expect(ARTIFACTS_404)),
]

PARAMS = [
    pytest.param(
        row,
        id=row.fault,
        marks=[pytest.mark.postgres, pytest.mark.skipif(PG_URL is None, reason=PG_SKIP_REASON)]
        if row.fault.startswith("postgres")
        else [],
    )
    for row in ROWS
]


@pytest.fixture(scope="module")
def rig(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One daemon on the sandbox for every row, stopped (and everything around it) at the end."""
    sandbox.faults.clear_faults()
    matrix = Rig(sandbox, tmp_path_factory.mktemp("fault-matrix"))
    try:
        matrix.start()
        yield matrix
    finally:
        matrix.close()


def test_the_matrix_covers_every_fault_class() -> None:
    """Target, Slack, store and process faults each have rows; the named target faults are all in."""
    faults = {row.fault for row in ROWS}
    assert {"auth-down", "alb-no-healthy-target", "artifacts-404", "mlflow-slow"} <= faults
    for prefix in ("slack-", "sqlite-", "postgres-", "sigterm", "sigkill"):
        assert any(f.startswith(prefix) for f in faults), prefix


@pytest.mark.sandbox
@pytest.mark.timeout(400)
# Every row on one test worker: the rig (a daemon on the sandbox) is started once, and the rows keep
# their order (the PostgreSQL row last).
@pytest.mark.xdist_group("fault_matrix")
@pytest.mark.parametrize("row", PARAMS)
def test_fault(rig: Rig, row: Row) -> None:
    """Through the fault: probing goes on, no traceback, no ERROR, each alert delivered exactly once
    (or refused for good and counted), no finished run lost."""
    rig.wait_quiet(rig.mark())
    start = rig.mark()
    kept = row.act(rig, row.expect, start) or start
    rig.wait_quiet(rig.mark())

    # No traceback, no ERROR: every failure was understood.
    assert "Traceback" not in rig.text(start)
    assert [r["event"] for r in rig.records(start) if "exception" in r or "exc_info" in r] == []
    errors = [(r["probe"], r.get("failing_step")) for r in rig.finished(start) if r["status"] == "ERROR"]
    assert errors == []

    # No alert lost or sent twice.
    outbox = rig.outbox(start)
    assert [r for r in outbox if r.state == "pending"] == []
    opened = [r for r in outbox if r.kind == "opened"]
    assert len(opened) == row.expect.pages, outbox
    assert sum(r.state == "failed" for r in outbox) == row.expect.failed, outbox
    for r in opened:
        assert r.attempts in row.expect.attempts, outbox
    posts = [e for e in rig.slack.since(start.exchanges) if e.is_post and e.accepted]
    assert len(posts) == sum(r.state == "sent" for r in outbox), (outbox, [p.body.get("text") for p in posts])
    roots = {e.answer["ts"] for e in posts if not e.body.get("thread_ts")}
    assert {e.body["thread_ts"] for e in posts if e.body.get("thread_ts")} <= roots
    if row.expect.plain_page:
        [page] = [e for e in posts if not e.body.get("thread_ts")]
        assert not page.body.get("blocks")
        assert page.body.get("text")

    # No finished run lost.
    finished = {r["run_id"] for r in rig.finished(kept)}
    wait_for(lambda: finished <= rig.stored_run_ids(), "every finished run in the store", timeout_s=30)
