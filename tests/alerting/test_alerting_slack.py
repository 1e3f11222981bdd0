"""Slack: golden Block Kit messages, and the notifier against a fake Slack API on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from monitor.alerting.base import Event, EventKind, TransportError
from monitor.alerting.config import LinksConfig, SlackConfig
from monitor.alerting.slack import SlackNotifier, build_message

from .fakeslack import TOKEN, WEBHOOK_PATH, FakeSlack, fake_slack

GOLDEN = Path(__file__).with_name("golden")
T0 = datetime(2025, 7, 22, 10, 37, tzinfo=UTC)
LINKS = LinksConfig(
    status_page_url="https://synthmon.example/", grafana_url="https://grafana.example/d/synthmon"
)


def event(kind: EventKind, probe: str = "artifact_roundtrip", owner: str = "artifact_roundtrip") -> Event:
    """A representative event: the seed incident's artifact upload 404."""
    failing = kind is not EventKind.RESOLVED
    return Event(
        kind=kind,
        probe=probe,
        incident_id=f"{owner}-3f2a9c",
        incident_probe=owner,
        environment="production",
        at=T0 + timedelta(minutes=42 if not failing else 0),
        since=T0 - timedelta(minutes=2),
        run_id="3f2a9c1e",
        old_status="PASS" if kind in (EventKind.OPENED, EventKind.JOINED) else "FAIL",
        new_status="FAIL" if failing else "PASS",
        step="upload" if failing else None,
        http_status=404 if failing else None,
        error_class="http_status" if failing else None,
        message="404 Not Found for url: .../api/mlflow/api/2.0/mlflow-artifacts/artifacts/<run>"
        if failing
        else "",
        cause="artifact route not deployed or not routed through the proxy" if failing else None,
        hint="MLflow serves artifacts only with --serve-artifacts" if failing else None,
        action="check the registry proxy's /api/mlflow routing" if failing else None,
    )


GOLDEN_CASES = [
    ("opened", event(EventKind.OPENED), False),
    ("joined", event(EventKind.JOINED, owner="mlflow_api"), False),
    ("updated", event(EventKind.UPDATED), False),
    ("reminder", event(EventKind.REMINDER), False),
    ("resolved", event(EventKind.RESOLVED), False),
    ("resolved_root", event(EventKind.RESOLVED), True),
]


@pytest.mark.parametrize(("name", "ev", "root"), GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES])
def test_build_message_golden(name: str, ev: Event, root: bool) -> None:
    """build_message renders each event kind exactly as the reviewed golden file."""
    msg = build_message(ev, LINKS, root=root)
    got = {"text": msg.text, "blocks": msg.blocks}
    expected = json.loads((GOLDEN / f"{name}.json").read_text())
    assert got == expected


def test_build_message_escapes_mrkdwn() -> None:
    """Text from the platform cannot inject Slack links or mentions."""
    ev = Event(
        **{
            **event(EventKind.OPENED).to_dict(),
            "kind": EventKind.OPENED,
            "at": T0,
            "since": T0,
            "message": "<!channel> <http://evil|click>",
        }
    )
    dumped = json.dumps(build_message(ev).blocks)
    assert "<!channel>" not in dumped
    assert "&lt;!channel&gt;" in dumped


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fake Slack API for one test."""
    with fake_slack() as s:
        yield s


def bot(slack: FakeSlack, token: str = TOKEN) -> SlackNotifier:
    return SlackNotifier(
        SlackConfig(bot_token=SecretStr(token), channel="#alerts", api_url=slack.api_url), LINKS
    )


def hook(slack: FakeSlack, path: str = WEBHOOK_PATH) -> SlackNotifier:
    url = f"http://127.0.0.1:{slack.port}{path}"
    return SlackNotifier(SlackConfig(webhook_url=SecretStr(url)), LINKS)


def test_bot_threads_updates_and_edits_root_on_resolve(slack: FakeSlack) -> None:
    """Opening posts a root; updates and the resolution reply in its thread; the root is edited."""
    n = bot(slack)
    thread = n.send(event(EventKind.OPENED), None)
    assert thread is not None
    channel, _, ts = thread.partition(":")
    assert n.send(event(EventKind.UPDATED), thread) is None
    assert n.send(event(EventKind.RESOLVED), thread) is None
    posts = slack.posted("chat.postMessage")
    assert [p.body.get("thread_ts") for p in posts] == [None, ts, ts]
    assert posts[0].body["channel"] == "#alerts"
    assert posts[0].auth == f"Bearer {TOKEN}"
    [edit] = slack.posted("chat.update")
    assert (edit.body["channel"], edit.body["ts"]) == (channel, ts)
    assert "resolved after 44 min" in edit.body["blocks"][0]["text"]["text"]


def test_joined_probe_resolution_does_not_edit_upstream_root(slack: FakeSlack) -> None:
    """A dependent probe's recovery is a reply in the upstream thread, never an edit of its root."""
    n = bot(slack)
    n.send(event(EventKind.RESOLVED, probe="artifact_roundtrip", owner="mlflow_api"), "C0FAKE:1.000001")
    assert slack.posted("chat.update") == []
    assert len(slack.posted("chat.postMessage")) == 1


def test_webhook_posts_blocks(slack: FakeSlack) -> None:
    """Webhook mode posts the Block Kit message to the webhook URL and starts no thread."""
    assert hook(slack).send(event(EventKind.OPENED), None) is None
    [req] = slack.requests
    assert req.path == WEBHOOK_PATH
    assert req.body["blocks"][0]["type"] == "header"


def test_429_is_retried_after_retry_after(slack: FakeSlack) -> None:
    """A 429 with Retry-After is retried by slack-sdk's handler and the message is delivered once."""
    slack.fail("429")
    started = time.monotonic()
    assert bot(slack).send(event(EventKind.OPENED), None) is not None
    assert time.monotonic() - started >= 0.9
    assert len(slack.posted()) == 2
    assert slack.requests[-1].body["text"] == slack.requests[0].body["text"]


@pytest.mark.parametrize(
    ("fault", "permanent"),
    [("500", False), ("invalid_auth", True), ("channel_not_found", True)],
    ids=["500-transient", "invalid_auth-permanent", "channel_not_found-permanent"],
)
def test_bot_errors_are_classified(slack: FakeSlack, fault: str, permanent: bool) -> None:
    """Server errors are transient; bad token and unknown channel are permanent; no secret in the text."""
    slack.fail(fault)
    with pytest.raises(TransportError) as info:
        bot(slack).send(event(EventKind.OPENED), None)
    assert info.value.permanent is permanent
    assert TOKEN not in str(info.value)
    if fault != "500":
        assert fault in str(info.value)


@pytest.mark.parametrize(
    ("fault", "permanent"), [("500", False), ("no_service", True)], ids=["500-transient", "404-permanent"]
)
def test_webhook_errors_are_classified_without_leaking_url(
    slack: FakeSlack, fault: str, permanent: bool
) -> None:
    """Webhook 5xx is transient, 404 no_service permanent; the webhook URL never appears in the error."""
    slack.fail(fault)
    with pytest.raises(TransportError) as info:
        hook(slack).send(event(EventKind.OPENED), None)
    assert info.value.permanent is permanent
    assert WEBHOOK_PATH not in str(info.value)
    assert "BFAKE" not in repr(info.value)


def test_connection_refused_is_transient() -> None:
    """Slack unreachable (connection refused, after slack-sdk's retries) is a transient error."""
    with fake_slack() as s:
        api = s.api_url
    n = SlackNotifier(
        SlackConfig(bot_token=SecretStr(TOKEN), channel="#alerts", api_url=api), LINKS, retries=0
    )
    with pytest.raises(TransportError) as info:
        n.send(event(EventKind.OPENED), None)
    assert info.value.permanent is False
