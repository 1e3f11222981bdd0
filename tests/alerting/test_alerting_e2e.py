"""End to end: `synthmon run` against the sandbox, alerting a fake Slack API (all real processes on loopback).

healthy -> fault ``artifacts-404`` -> exactly one Slack thread root naming the probe, the step, the 404
and the diagnosis hint -> fault cleared -> exactly one resolution reply in that thread, and the root
edited with ``chat.update``. Also: two daemons sharing one PostgreSQL store page once, and a daemon
restarted mid-incident neither re-sends the root nor loses the resolution. No secret (API key, bot
token) may appear in a Slack payload, a log line or a stored row.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.control import FaultControl
from sandbox.core import Sandbox
from tests.alerting.alerting_e2e_daemon import (
    DaemonProcess,
    assert_no_secret,
    dump_tables,
    free_port,
    logged_events,
    outbox_rows,
    start_daemon,
    statuses,
    wait_for,
    write_config,
)
from tests.alerting.fakeslack import TOKEN, FakeSlack, Request, fake_slack
from tests.history.history_helpers import PG_SKIP_REASON, PG_URL, pg_schema_url

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(400)]

PROBE = "artifact_roundtrip"
CHANNEL = "C0FAKE"  # the channel id the fake answers with (the config names "#synthmon-e2e")
#: The built-in diagnosis for a 404 under /mlflow-artifacts/ (monitor/diagnosis.py).
HINT = "artifact route not deployed or not routed through the proxy"
GOOD = ("PASS", "DEGRADED")  # DEGRADED counts as good with alert_on_degraded: false


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fresh fake Slack API for one test."""
    with fake_slack() as fake:
        yield fake


def daemon_env(sandbox: Sandbox, slack: FakeSlack, store_url: str) -> dict[str, str]:
    """The environment that points a daemon at the sandbox, the fake Slack and ``store_url``."""
    env = sandbox.env()
    return {
        "AUTH_URL": env["AUTH_URL"],
        "REGISTRY_URL": env["REGISTRY_URL"],
        "SYNTHMON_API_KEY": env["SYNTHMON_API_KEY"],
        "SYNTHMON_STORE_URL": store_url,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_CHANNEL": "#synthmon-e2e",
        "SLACK_API_URL": slack.api_url,
    }


def roots(slack: FakeSlack) -> list[Request]:
    """chat.postMessage calls that start a thread."""
    return [r for r in slack.posted("chat.postMessage") if not r.body.get("thread_ts")]


def replies(slack: FakeSlack) -> list[Request]:
    """chat.postMessage calls that reply in a thread."""
    return [r for r in slack.posted("chat.postMessage") if r.body.get("thread_ts")]


def answered_ts(slack: FakeSlack, request: Request) -> str:
    """The ``ts`` the fake answered ``request`` with: its counter runs in request order, from 1."""
    with slack.lock:
        index = next(i for i, r in enumerate(slack.requests) if r is request)
    return f"1753178400.{index + 1:06d}"


def payload_text(request: Request) -> str:
    """Everything a message shows: the fallback text and the Block Kit blocks."""
    return json.dumps({"text": request.body.get("text"), "blocks": request.body.get("blocks")})


def wait_healthy(daemons: list[DaemonProcess], count: int = 2) -> None:
    """Wait until the newest ``count`` stored runs of the probe are good (read through the first daemon)."""

    def ok() -> bool:
        runs = statuses(daemons[0].runs(PROBE))
        return len(runs) >= count and all(s in GOOD for s in runs[:count])

    wait_for(ok, f"{count} good {PROBE} runs", timeout_s=90)


def wait_more_runs(daemon: DaemonProcess, status: tuple[str, ...], count: int) -> None:
    """Wait until ``count`` more runs with one of ``status`` are stored (dispatch keeps running meanwhile)."""
    before = sum(s in status for s in statuses(daemon.runs(PROBE)))
    wait_for(
        lambda: sum(s in status for s in statuses(daemon.runs(PROBE))) >= before + count,
        f"{count} more {status} runs of {PROBE}",
        timeout_s=90,
    )


def assert_root_message(root: Request) -> None:
    """The opening names the probe, the failing step, the 404 and the diagnosis hint."""
    text = payload_text(root)
    assert root.body.get("channel") == "#synthmon-e2e"
    assert "artifact_roundtrip" in text
    assert "at step upload" in root.body["text"]
    assert "HTTP 404" in root.body["text"]
    assert HINT in text
    assert "e2e-alerting" in text


def assert_one_resolved_thread(slack: FakeSlack) -> None:
    """One root, one resolution reply in its thread, and one chat.update of that root."""
    assert len(roots(slack)) == 1, [r.body.get("text") for r in roots(slack)]
    root = roots(slack)[0]
    assert_root_message(root)
    root_ts = answered_ts(slack, root)
    thread = replies(slack)
    assert len(thread) == 1, [r.body.get("text") for r in thread]
    assert thread[0].body["thread_ts"] == root_ts
    assert thread[0].body["channel"] == CHANNEL
    assert "resolved" in payload_text(thread[0])
    updates = slack.posted("chat.update")
    assert len(updates) == 1
    assert updates[0].body["ts"] == root_ts
    assert updates[0].body["channel"] == CHANNEL
    assert "resolved after" in payload_text(updates[0])


def assert_no_secrets(
    slack: FakeSlack, sandbox: Sandbox, daemons: list[DaemonProcess], store_url: str
) -> None:
    """Neither the API key nor the bot token is in a Slack body, a log line or a stored row."""
    secrets = [sandbox.keys.admin, TOKEN]
    with slack.lock:
        bodies = json.dumps([r.body for r in slack.requests])
    assert_no_secret(bodies, secrets, "a Slack payload")
    for daemon in daemons:
        logs = daemon.logs()
        assert "daemon.started" in logs  # the scan read the real log stream, not an empty file
        assert_no_secret(logs, secrets, f"the log of the daemon on :{daemon.port}")
    stored = dump_tables(store_url)
    assert PROBE in stored  # the dump holds the runs, so the scan covered them
    assert_no_secret(stored, secrets, "the store")


def assert_each_event_once(store_url: str, daemons: list[DaemonProcess]) -> None:
    """The incident produced one ``opened`` and one ``resolved`` event, each delivered in one attempt."""
    sent = [("opened", "slack", "sent", 1), ("resolved", "slack", "sent", 1)]
    assert outbox_rows(store_url) == sent
    decided = [e["kind"] for d in daemons for e in logged_events(d, "incident_event") if e["probe"] == PROBE]
    assert sorted(decided) == ["opened", "resolved"]


def incidents_of(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """The store's incidents of the probe, via the daemon's API."""
    body = daemon.get_json("/api/v1/incidents")
    return [i for i in (body or {}).get("incidents", []) if i["probe"] == PROBE]


def test_artifacts_404_pages_once_and_clearing_resolves_in_the_same_thread(
    sandbox: Sandbox, faults: FaultControl, slack: FakeSlack, tmp_path: Path
) -> None:
    """healthy -> artifacts-404 -> one root naming upload/404/hint -> clear -> one reply + root edited."""
    store_url = f"sqlite:///{tmp_path}/synthmon.db"
    config = write_config(tmp_path / "synthmon.yaml", port=free_port())
    daemon = start_daemon(config, daemon_env(sandbox, slack, store_url), tmp_path, "d1")
    try:
        wait_healthy([daemon])
        assert slack.requests == []

        faults.set_faults("artifacts-404")
        wait_for(lambda: roots(slack), "the Slack root message")
        # Keep failing for a while: a duplicate page would show up now.
        wait_more_runs(daemon, ("FAIL",), 2)
        assert len(roots(slack)) == 1
        assert replies(slack) == []
        [incident] = incidents_of(daemon)
        assert incident["resolved_at"] is None

        faults.clear_faults()
        wait_for(lambda: replies(slack), "the resolution reply")
        # A few more good runs and dispatch cycles: nothing else may be sent.
        wait_more_runs(daemon, GOOD, 2)
        assert_one_resolved_thread(slack)
        [incident] = incidents_of(daemon)
        assert incident["resolved_at"] is not None
    finally:
        code = daemon.stop()
    assert code == 0
    assert_each_event_once(store_url, [daemon])
    assert_no_secrets(slack, sandbox, [daemon], store_url)


def test_restart_mid_incident_resends_nothing_and_resolves_in_the_original_thread(
    sandbox: Sandbox, faults: FaultControl, slack: FakeSlack, tmp_path: Path
) -> None:
    """SIGTERM while the incident is open, start again on the same store: no re-send, same thread."""
    store_url = f"sqlite:///{tmp_path}/synthmon.db"
    config = write_config(tmp_path / "synthmon.yaml", port=free_port())
    env = daemon_env(sandbox, slack, store_url)
    first = start_daemon(config, env, tmp_path, "before")
    try:
        wait_healthy([first])
        faults.set_faults("artifacts-404")
        wait_for(lambda: roots(slack), "the Slack root message")
    finally:
        assert first.stop() == 0

    second = start_daemon(config, env, tmp_path, "after")
    try:
        # Failing runs after the restart: the open incident must be recognised, not re-opened.
        wait_more_runs(second, ("FAIL",), 3)
        assert len(roots(slack)) == 1
        assert replies(slack) == []
        faults.clear_faults()
        wait_for(lambda: replies(slack), "the resolution reply")
        wait_more_runs(second, GOOD, 2)
        assert_one_resolved_thread(slack)
        assert len(incidents_of(second)) == 1
    finally:
        code = second.stop()
    assert code == 0
    assert_each_event_once(store_url, [first, second])
    # The second daemon took over the open incident: it, not the first, decided the resolution.
    assert [e["kind"] for e in logged_events(second, "incident_event")] == ["resolved"]
    assert_no_secrets(slack, sandbox, [first, second], store_url)


@pytest.mark.postgres
@pytest.mark.skipif(PG_URL is None, reason=PG_SKIP_REASON)
def test_two_daemons_on_postgres_send_one_thread(
    sandbox: Sandbox, faults: FaultControl, slack: FakeSlack, tmp_path: Path
) -> None:
    """Two daemons sharing a PostgreSQL store: one root, one resolution, one edit -- never twice."""
    assert PG_URL is not None
    with pg_schema_url(PG_URL) as store_url:
        env = daemon_env(sandbox, slack, store_url)
        daemons: list[DaemonProcess] = []
        try:
            for name in ("a", "b"):
                # Same probe interval on both: their runs interleave, both race for every transition.
                config = write_config(tmp_path / f"synthmon-{name}.yaml", port=free_port())
                daemons.append(start_daemon(config, env, tmp_path, name))
            wait_healthy(daemons, count=3)
            faults.set_faults("artifacts-404")
            wait_for(lambda: roots(slack), "the Slack root message")
            wait_more_runs(daemons[0], ("FAIL",), 4)  # both daemons' runs count: ~2 each
            assert len(roots(slack)) == 1
            assert replies(slack) == []

            faults.clear_faults()
            wait_for(lambda: replies(slack), "the resolution reply")
            wait_more_runs(daemons[0], GOOD, 4)
            assert_one_resolved_thread(slack)
            assert len(incidents_of(daemons[1])) == 1
        finally:
            codes = [d.stop() for d in daemons]
        assert codes == [0, 0]
        # Both daemons really probed (so both raced for every transition and every outbox row).
        for daemon in daemons:
            finished = [e for e in logged_events(daemon, "probe.finished") if e["probe"] == PROBE]
            assert {e["status"] for e in finished} >= {"PASS", "FAIL"}
        assert_each_event_once(store_url, daemons)
        assert_no_secrets(slack, sandbox, daemons, store_url)


def test_slack_errors_delay_the_page_but_it_is_delivered_once(
    sandbox: Sandbox, faults: FaultControl, slack: FakeSlack, tmp_path: Path
) -> None:
    """Slack answering 500 twice: the root is retried with backoff and lands once; the thread still works."""
    store_url = f"sqlite:///{tmp_path}/synthmon.db"
    config = write_config(tmp_path / "synthmon.yaml", port=free_port())
    daemon = start_daemon(config, daemon_env(sandbox, slack, store_url), tmp_path, "d1")
    try:
        wait_healthy([daemon])
        slack.fail("500", times=2)
        faults.set_faults("artifacts-404")
        wait_for(lambda: len(roots(slack)) >= 3, "the root message after two Slack 500s")
        faults.clear_faults()
        wait_for(lambda: replies(slack), "the resolution reply")
        wait_more_runs(daemon, GOOD, 2)
    finally:
        code = daemon.stop()
    assert code == 0
    attempts = roots(slack)
    assert len(attempts) == 3, "two failed attempts and one accepted, nothing after"
    assert attempts[0].body == attempts[1].body == attempts[2].body  # the same event, retried as is
    # The thread hangs off the accepted (third) attempt.
    root_ts = answered_ts(slack, attempts[2])
    [reply] = replies(slack)
    assert reply.body["thread_ts"] == root_ts
    [update] = slack.posted("chat.update")
    assert update.body["ts"] == root_ts
    assert outbox_rows(store_url) == [("opened", "slack", "sent", 3), ("resolved", "slack", "sent", 1)]
    retries = logged_events(daemon, "notification_retry")
    assert [r["attempts"] for r in retries] == [1, 2]
    assert_no_secrets(slack, sandbox, [daemon], store_url)


def test_maintenance_window_added_by_sighup_holds_the_page(
    sandbox: Sandbox, faults: FaultControl, slack: FakeSlack, tmp_path: Path
) -> None:
    """A maintenance window added to the config and applied with SIGHUP holds the page: nothing to Slack."""
    store_url = f"sqlite:///{tmp_path}/synthmon.db"
    port = free_port()
    config = write_config(tmp_path / "synthmon.yaml", port=port)
    daemon = start_daemon(config, daemon_env(sandbox, slack, store_url), tmp_path, "d1")
    try:
        wait_healthy([daemon])
        # Every day from 00:00 for 24 h: always inside the window.
        window = (
            "  maintenance:\n"
            "    - {name: e2e-window, probes: [artifact_roundtrip], start: '00:00', duration: 1d}\n"
        )
        write_config(config, port=port, alerting_extra=window)
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: logged_events(daemon, "config.reloaded"), "the reload")
        faults.set_faults("artifacts-404")
        wait_for(lambda: incidents_of(daemon), "the incident to open (held, not sent)")
        wait_more_runs(daemon, ("FAIL",), 2)
        faults.clear_faults()
        wait_for(lambda: incidents_of(daemon)[0]["resolved_at"], "the incident to resolve")
        wait_more_runs(daemon, GOOD, 1)
    finally:
        code = daemon.stop()
    assert code == 0
    assert slack.requests == [], [r.body.get("text") for r in slack.requests]
    # Held, not lost from the state machine: the incident was recorded, and no event was queued.
    assert outbox_rows(store_url) == []
