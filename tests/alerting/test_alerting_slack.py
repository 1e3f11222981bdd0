"""Slack: golden Block Kit messages, Slack's limits, and the notifier against a fake Slack API on loopback."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from monitor.alerting.base import Event, EventKind, IncidentSummary, Member, TransportError
from monitor.alerting.config import IncidentRule, LinksConfig, SlackConfig
from monitor.alerting.incidents import IncidentState, transition
from monitor.alerting.slack import SlackNotifier
from monitor.alerting.slack_message import ELLIPSIS, PLAIN_CHARS, build_message, clip, duration_words
from monitor.diagnosis import BUILTIN_SIGNATURES, CAUSE_TITLES, COMPUTED_CAUSES, cause_title, diagnose
from monitor.results import ProbeResult
from monitor.runner import Runner
from probes.base import Status, StepResult, SystemClock
from probes.registry import PROBE_KINDS
from probes.support.masking import MASK
from tests.core import kinds
from tests.core.conftest import FAKE_KEY, Captured, config_from

from .fakeslack import TOKEN, WEBHOOK_PATH, FakeSlack, Limits, fake_slack, form_error

GOLDEN = Path(__file__).with_name("golden")
T0 = datetime(2025, 7, 22, 10, 37, tzinfo=UTC)
LINKS = LinksConfig(
    status_page_url="https://synthmon.example/", grafana_url="https://grafana.example/d/synthmon"
)
#: The seed incident's failing step: the artifact upload answered 404 through the proxy.
SEED_STEP = StepResult(
    name="upload",
    status=Status.FAIL,
    http_status=404,
    error_class="http_status",
    message="404 Not Found for url: .../api/mlflow/api/2.0/mlflow-artifacts/artifacts/<run>",
    path="/api/mlflow/api/2.0/mlflow-artifacts/artifacts/3f2a9c1e/model.pkl",
)
SEED = diagnose(SEED_STEP)
assert SEED is not None


def event(kind: EventKind, probe: str = "artifact_roundtrip", owner: str = "artifact_roundtrip") -> Event:
    """A representative event: the seed incident's artifact upload 404, diagnosed by the built-ins."""
    failing = kind is not EventKind.RESOLVED
    assert SEED is not None
    return Event(
        kind=kind,
        probe=probe,
        incident_id=f"{owner}-3f2a9c",
        incident_probe=owner,
        environment="production",
        at=T0 + timedelta(minutes=42 if kind in (EventKind.RESOLVED, EventKind.REMINDER) else 0),
        since=T0 - timedelta(minutes=2),
        run_id="3f2a9c1e",
        old_status="PASS" if kind in (EventKind.OPENED, EventKind.JOINED) else "FAIL",
        new_status="FAIL" if failing else "PASS",
        step="upload" if failing else None,
        http_status=404 if failing else None,
        error_class="http_status" if failing else None,
        message=SEED_STEP.message if failing else "",
        cause=SEED.cause if failing else None,
        hint=SEED.hint if failing else None,
        action=SEED.action if failing else None,
        title=cause_title(SEED.cause),
    )


#: A hint as long as a config author may write one: far beyond what a Slack section holds.
LONG_HINT = " ".join(f"the proxy-route{i} answers 404 & <nothing> else" for i in range(400))

#: The seed outage as one incident: the ALB's registry health check, the upload and the registration.
SEED_MEMBERS = (
    Member("alb_health", "registry_health", 503, "FAIL", "application_unavailable"),
    Member("artifact_roundtrip", "upload", 404, "FAIL", "artifact_route_not_deployed"),
    Member("registration", "log_model", 404, "FAIL", "artifact_route_not_deployed"),
)
SEED_SUMMARY = IncidentSummary(
    incident_id="alb_health-3f2a9c",
    title=cause_title(SEED.cause),
    since=T0 - timedelta(minutes=2),
    members=SEED_MEMBERS,
    root_probe="artifact_roundtrip",
    root_step="upload",
    cause=SEED.cause,
    hint=SEED.hint,
    action=SEED.action,
)
SEED_RESOLVED = replace(
    SEED_SUMMARY, members=tuple(replace(m, active=False) for m in SEED_MEMBERS), resolved=True
)

GOLDEN_CASES = [
    ("opened", event(EventKind.OPENED), False),
    ("joined", event(EventKind.JOINED, owner="mlflow_api"), False),
    ("updated", event(EventKind.UPDATED), False),
    ("reminder", event(EventKind.REMINDER), False),
    ("resolved", event(EventKind.RESOLVED), False),
    ("resolved_root", event(EventKind.RESOLVED), True),
    ("long_hint", replace(event(EventKind.OPENED), hint=LONG_HINT), False),
    ("undiagnosed", replace(event(EventKind.OPENED), cause=None, hint=None, action=None, title=None), False),
    ("incident_root", replace(event(EventKind.OPENED, owner="alb_health"), summary=SEED_SUMMARY), False),
    (
        "incident_recovered",
        replace(
            event(EventKind.RESOLVED, probe="alb_health", owner="alb_health"),
            kind=EventKind.RECOVERED,
            summary=replace(
                SEED_SUMMARY, members=(replace(SEED_MEMBERS[0], active=False), *SEED_MEMBERS[1:])
            ),
        ),
        False,
    ),
    (
        "incident_resolved_root",
        replace(event(EventKind.RESOLVED, probe="registration", owner="alb_health"), summary=SEED_RESOLVED),
        True,
    ),
]


@pytest.mark.parametrize(("name", "ev", "root"), GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES])
def test_build_message_golden(name: str, ev: Event, root: bool) -> None:
    """build_message renders each event kind exactly as the reviewed golden file."""
    msg = build_message(ev, LINKS, root=root)
    got = {"text": msg.text, "blocks": msg.blocks, "plain": msg.plain}
    path = GOLDEN / f"{name}.json"
    if os.environ.get("SYNTHMON_UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n")
    expected = json.loads(path.read_text())
    assert got == expected


def test_message_names_the_cause_in_words_and_keeps_the_code_in_the_context() -> None:
    """The header and the notification text say the title; the code only appears in the small print."""
    msg = build_message(event(EventKind.OPENED), LINKS)
    header, *_, context = msg.blocks
    assert header["text"]["text"] == ":red_circle: [production] Artifact storage not deployed"
    assert msg.text.startswith("[production] Artifact storage not deployed — artifact_roundtrip PASS → FAIL")
    assert "artifact_route_not_deployed" not in json.dumps(msg.blocks[:-1]) + msg.text
    assert "cause `artifact_route_not_deployed`" in context["elements"][0]["text"]


def test_every_builtin_cause_has_a_written_title() -> None:
    """Each built-in cause code has its own title, and no title is left for a code that is gone."""
    assert {s.cause for s in BUILTIN_SIGNATURES} | COMPUTED_CAUSES == set(CAUSE_TITLES)
    assert all(t and t[0].isupper() and not t.endswith(".") for t in CAUSE_TITLES.values())


@pytest.mark.parametrize(
    ("cause", "title"),
    [
        ("artifact_route_not_deployed", "Artifact storage not deployed"),
        ("vpn_tunnel_down", "Vpn tunnel down"),
        ("db-replica__lag", "Db replica lag"),
        ("", ""),
    ],
    ids=["builtin", "config-code", "dashes-and-doubles", "empty"],
)
def test_cause_title(cause: str, title: str) -> None:
    """A built-in code reads as its written title; any other code reads as its words."""
    assert cause_title(cause) == title


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (-3, "0 s"),
        (0, "0 s"),
        (0.4, "0 s"),
        (40, "40 s"),
        (59.4, "59 s"),
        (59.6, "1 min"),
        (60, "1 min"),
        (89, "1 min"),
        (90, "2 min"),
        (180, "3 min"),
        (44 * 60 + 20, "44 min"),
        (3569, "59 min"),
        (3599, "1 h"),
        (7500, "2 h 5 min"),
        (7200 + 29, "2 h"),
        (23 * 3600 + 59 * 60, "23 h 59 min"),
        (24 * 3600 - 20, "1 d"),
        (26 * 3600 + 10 * 60, "1 d 2 h"),
        (3 * 86400 + 4 * 3600 + 40 * 60, "3 d 5 h"),
    ],
    ids=lambda v: str(v).replace(" ", "") if isinstance(v, str) else None,
)
def test_duration_words(seconds: float, words: str) -> None:
    """Durations read in the unit that fits, rounded to the last unit shown (never "0 min")."""
    assert duration_words(seconds) == words


def test_resolution_after_40_seconds_says_40_s() -> None:
    """A 40-second incident resolves "after 40 s", in the root edit and in the reply."""
    ev = replace(event(EventKind.RESOLVED), since=T0, at=T0 + timedelta(seconds=40))
    root = build_message(ev, LINKS, root=True)
    reply = build_message(ev, LINKS)
    assert root.blocks[0]["text"]["text"].endswith("Artifact storage not deployed: resolved after 40 s")
    assert "artifact_roundtrip resolved after 40 s" in reply.text
    assert "0 min" not in root.text + reply.text


@pytest.mark.parametrize(
    ("text", "limit", "escape", "expected"),
    [
        ("fits exactly", 12, False, "fits exactly"),
        ("cut between words please", 16, False, "cut between…"),
        ("cut at a word end here", 9, False, "cut at a…"),
        ("trailing spaces     then", 15, False, "trailing…"),
        ("a & b & c & d", 12, True, "a &amp; b…"),
        ("x <y> z", 12, True, "x &lt;y&gt;…"),
        ("short " + "t" * 40, 20, False, "short " + "t" * 13 + ELLIPSIS),
        ("t" * 40, 10, False, "t" * 9 + ELLIPSIS),
        ("emoji 😀😀😀😀 tail", 12, False, "emoji 😀😀…"),
        ("anything", 1, False, ""),
    ],
    ids=[
        "fits",
        "word-boundary",
        "boundary-at-limit",
        "trailing-spaces",
        "entity-never-split",
        "escape-counted",
        "long-token-cut-hard",
        "one-token",
        "utf16-counted",
        "no-room",
    ],
)
def test_clip(text: str, limit: int, escape: bool, expected: str) -> None:
    """clip keeps whole words and whole entities, ends in an ellipsis, and never exceeds the limit."""
    got = clip(text, limit, escape=escape)
    assert got == expected
    assert len(got.encode("utf-16-le")) // 2 <= limit


def _words(rng: random.Random, n: int) -> str:
    alphabet = "abcdefghij&<>_*`'/é😀"
    return " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14))) for _ in range(n))


def test_any_length_fits_slacks_limits_and_cuts_between_words() -> None:
    """Long and odd texts in every field still give a message within Slack's limits, cut at words."""
    rng = random.Random(9)
    clipped = 0
    for i in range(60):
        big = rng.choice([10, 300, 3000])
        hint = _words(rng, rng.randint(1, big))
        ev = replace(
            event(rng.choice(list(EventKind))),
            environment=_words(rng, rng.randint(0, 3)),
            probe=_words(rng, rng.randint(1, big // 10)),
            step=_words(rng, rng.randint(1, big)),
            title=_words(rng, rng.randint(1, big)),
            hint=hint,
            action=_words(rng, rng.randint(1, big)),
            message=_words(rng, rng.randint(1, big * 2)),
            error_class=_words(rng, 1),
            run_id=_words(rng, 1),
        )
        msg = build_message(ev, LINKS, root=bool(i % 2))
        assert form_error({"text": msg.text, "blocks": msg.blocks}, Limits()) is None, i
        assert len(msg.plain.encode("utf-16-le")) // 2 <= PLAIN_CHARS
        shown = next(
            (b["text"]["text"] for b in msg.blocks if "*Hint:*" in b.get("text", {}).get("text", "")), ""
        )
        if ELLIPSIS in shown:
            clipped += 1
            kept = shown.split("*Hint:* ", 1)[1].split("\n", 1)[0].removesuffix(ELLIPSIS).split(" ")
            words = hint.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").split(" ")
            assert kept == words[: len(kept)], i
    assert clipped > 5


def test_event_queued_without_a_title_still_renders() -> None:
    """An outbox row written before events carried titles loads and renders with the probe's name."""
    row = event(EventKind.OPENED).to_dict()
    del row["title"]
    ev = Event.from_dict(row)
    assert ev.title is None
    assert (
        build_message(ev, LINKS).blocks[0]["text"]["text"]
        == ":red_circle: [production] artifact_roundtrip failing"
    )


def _result(status: Status, at: datetime, step: StepResult) -> ProbeResult:
    return ProbeResult(
        "artifact_roundtrip", "artifact_roundtrip", f"r{at:%H%M%S}", at, 1.0, status, (step,), "production"
    )


def test_state_machine_events_carry_the_title_through_to_the_resolution() -> None:
    """Opening names the diagnosed cause in words; the resolution names the failure it ends."""
    assert SEED is not None
    rule = IncidentRule(failure_threshold=1, success_threshold=1)
    state = IncidentState(probe="artifact_roundtrip")
    state, [opened] = transition(state, _result(Status.FAIL, T0, SEED_STEP.with_(diagnosis=SEED)), rule, T0)
    later = T0 + timedelta(seconds=40)
    ok = StepResult(name="upload", status=Status.PASS)
    state, [resolved] = transition(state, _result(Status.PASS, later, ok), rule, later)
    assert (opened.cause, opened.title) == ("artifact_route_not_deployed", "Artifact storage not deployed")
    assert (resolved.cause, resolved.title) == (None, "Artifact storage not deployed")
    header = build_message(resolved, LINKS, root=True).blocks[0]["text"]["text"]
    assert header == ":large_green_circle: [production] Artifact storage not deployed: resolved after 40 s"


def test_long_failure_message_reaches_slack_whole() -> None:
    """A 1500-character step message travels through the incident into Slack uncut."""
    words = " ".join(f"retry{i} failed with exception ConnectionResetError" for i in range(30))
    assert len(words) > 1500
    step = SEED_STEP.with_(message=words)
    _, [opened] = transition(
        IncidentState(probe="artifact_roundtrip"),
        _result(Status.FAIL, T0, step),
        IncidentRule(failure_threshold=1),
        T0,
    )
    msg = build_message(opened, LINKS)
    assert f"```{words}```" in [b.get("text", {}).get("text") for b in msg.blocks]
    assert words in msg.plain


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


def test_long_hint_is_delivered_with_blocks_in_one_request(slack: FakeSlack) -> None:
    """A hint far beyond a section's 3000 characters is clipped, so Slack accepts the message as is."""
    ev = replace(event(EventKind.OPENED), hint=LONG_HINT)
    assert bot(slack).send(ev, None) is not None
    [req] = slack.requests
    assert req.body["blocks"][0]["type"] == "header"
    assert form_error(req.body, Limits()) is None


def _strict(slack: FakeSlack) -> None:
    """A Slack stricter than its documentation: any text over 100 characters is invalid_blocks."""
    slack.limits = Limits(header=100, section=100, field=100, element=100)


def test_invalid_blocks_is_retried_once_as_plain_text(slack: FakeSlack) -> None:
    """Slack refusing the blocks never drops the alert: the same facts go again as text alone."""
    _strict(slack)
    thread = bot(slack).send(event(EventKind.OPENED), None)
    assert thread is not None
    refused, plain = slack.posted()
    assert form_error(refused.body, slack.limits) == "invalid_blocks"
    assert "blocks" not in plain.body
    text = plain.body["text"]
    assert text.startswith(":red_circle: [production] Artifact storage not deployed\n")
    assert SEED is not None
    assert f"Hint: {SEED.hint}" in text
    assert f"Action: {SEED.action}" in text
    assert "404 Not Found for url" in text


def test_invalid_blocks_in_a_thread_reply_and_root_edit_fall_back_to_text(slack: FakeSlack) -> None:
    """On resolution both the root edit (its old blocks removed) and the reply fall back to text."""
    n = bot(slack)
    thread = n.send(event(EventKind.OPENED), None)
    assert thread is not None
    _strict(slack)
    assert n.send(event(EventKind.RESOLVED), thread) is None
    edits = slack.posted("chat.update")
    assert [e.body.get("blocks") == [] for e in edits] == [False, True]
    assert "Artifact storage not deployed: resolved after 44 min" in edits[1].body["text"]
    replies = slack.posted()[1:]
    assert [("blocks" in r.body, r.body.get("thread_ts")) for r in replies] == [
        (True, thread.partition(":")[2]),
        (False, thread.partition(":")[2]),
    ]


def test_webhook_invalid_blocks_is_retried_once_as_plain_text(slack: FakeSlack) -> None:
    """A webhook's 400 invalid_blocks is retried once as text, which Slack accepts."""
    _strict(slack)
    assert hook(slack).send(event(EventKind.OPENED), None) is None
    refused, plain = slack.requests
    assert "blocks" in refused.body
    assert "blocks" not in plain.body
    assert "Artifact storage not deployed" in plain.body["text"]


@pytest.mark.parametrize("mode", ["bot", "webhook"])
def test_form_error_of_the_plain_retry_too_is_permanent(slack: FakeSlack, mode: str) -> None:
    """Only when Slack refuses the plain text as well is the error permanent (two requests, no more)."""
    slack.fail("invalid_blocks", 2)
    n = bot(slack) if mode == "bot" else hook(slack)
    with pytest.raises(TransportError) as info:
        n.send(event(EventKind.OPENED), None)
    assert info.value.permanent is True
    assert "invalid_blocks" in str(info.value)
    assert len(slack.requests) == 2


def test_server_error_on_the_plain_retry_is_transient(slack: FakeSlack) -> None:
    """A 500 after the form error is an outage like any other: retried later, not dropped."""
    slack.fail("invalid_blocks")
    slack.fail("500")
    with pytest.raises(TransportError) as info:
        bot(slack).send(event(EventKind.OPENED), None)
    assert info.value.permanent is False


async def test_secret_in_a_failure_message_reaches_slack_masked(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key in an exception text is masked by the runner before the incident and Slack see it."""
    monkeypatch.setitem(PROBE_KINDS, "t_boom", kinds.BoomProbe)
    captured = Captured([FAKE_KEY])
    # Not in the config: masked because it is shaped like a platform key.
    stray = "hk_" + "live_" + "Zq9" * 8
    options = f"{{message: 'upload refused for {FAKE_KEY} (also tried {stray})'}}"
    text = (
        "environment: production\nsecrets:\n  api_key: ${KEY}\nprobes:\n"
        f"  - name: p\n    kind: t_boom\n    interval: 10s\n    timeout: 2s\n    options: {options}\n"
    )
    runner = Runner(config_from(text), clock=SystemClock(), logger=captured.logger, masker=captured.masker)
    result = await runner.run("p")
    rule = IncidentRule(failure_threshold=1, alert_on_error=True)
    _, [opened] = transition(IncidentState(probe="p"), result, rule, result.started_at)
    assert bot(slack).send(opened, None) is not None
    payload = json.dumps([r.body for r in slack.requests])
    assert FAKE_KEY not in payload
    assert stray not in payload
    assert f"upload refused for {MASK} (also tried {MASK})" in payload
