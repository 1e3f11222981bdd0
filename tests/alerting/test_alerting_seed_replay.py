"""The seed outage end to end: the shipped config.yaml (short intervals) run by `synthmon run` against
the sandbox with faults ``artifacts-404`` + ``registry-health-503``, alerting a fake Slack API.

One outage, one page: exactly one thread root, naming the artifact route/storage as the root cause
and listing artifact_roundtrip, registration and alb_health's registry_health; later symptoms are
replies in its thread and edits of the root; clearing both faults gives one resolution in that thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.control import FaultControl
from sandbox.core import Sandbox
from tests.alerting.alerting_e2e_daemon import REPO, free_port, start_daemon, wait_for
from tests.alerting.fakeslack import TOKEN, FakeSlack, Request, fake_slack

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(600)]

#: Intervals short enough to see the outage within a minute or two (registration runs ~7 s here).
INTERVALS = {"auth": 3, "alb_health": 4, "mlflow_api": 4, "artifact_roundtrip": 3, "registration": 15}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fresh fake Slack API for one test."""
    with fake_slack() as fake:
        yield fake


def shipped_config_with_short_intervals(path: Path, port: int) -> Path:
    """config.yaml as shipped (probes, options, depends_on) with short intervals, Slack by bot token."""
    data: dict[str, Any] = yaml.safe_load((REPO / "config.yaml").read_text())
    data["listen"] = f"127.0.0.1:{port}"
    data["environment"] = "seed-replay"
    data["store"] = {"url": "${SYNTHMON_STORE_URL}"}
    data["alerting"] = {
        "rules": {"failure_threshold": 2, "success_threshold": 2, "reminder_interval": 0},
        "slack": {"bot_token": "${SLACK_BOT_TOKEN}", "channel": "#seed", "api_url": "${SLACK_API_URL}"},
        "outbox": {"dispatch_interval": 0.5, "backoff_base": 1, "backoff_max": 5, "lease": 60},
    }
    # An SLO burn joins the outage's thread and keeps it open until its short window (5 min) drains:
    # longer than this replay waits for the resolution; tests/slo covers burns in threads.
    data.pop("slos", None)
    for probe in data["probes"]:
        probe["interval"] = f"{INTERVALS[probe['name']]}s"
        probe.pop("jitter", None)
        probe["allow_timeout_over_interval"] = True
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def roots(slack: FakeSlack) -> list[Request]:
    """chat.postMessage calls that start a thread."""
    return [r for r in slack.posted("chat.postMessage") if not r.body.get("thread_ts")]


def replies(slack: FakeSlack) -> list[Request]:
    """chat.postMessage calls that reply in a thread."""
    return [r for r in slack.posted("chat.postMessage") if r.body.get("thread_ts")]


def shown(request: Request) -> str:
    """Everything a message shows: the fallback text and the Block Kit blocks."""
    return json.dumps({"text": request.body.get("text"), "blocks": request.body.get("blocks")})


def root_now(slack: FakeSlack) -> str:
    """The thread root as it reads now: its last edit, else the root as posted."""
    edits = slack.posted("chat.update")
    return shown(edits[-1] if edits else roots(slack)[0])


AFFECTED = ("alb_health/registry_health", "artifact_roundtrip/upload", "registration/log_model")


def test_seed_outage_pages_once_naming_the_artifact_route(
    sandbox: Sandbox, faults: FaultControl, slack: FakeSlack, tmp_path: Path
) -> None:
    """artifacts-404 + registry-health-503 -> one root (artifact storage, three members) -> clear ->
    one resolution in that thread."""
    env = sandbox.env()
    daemon_env = {
        "AUTH_URL": env["AUTH_URL"],
        "REGISTRY_URL": env["REGISTRY_URL"],
        "SYNTHMON_API_KEY": env["SYNTHMON_API_KEY"],
        "SYNTHMON_STORE_URL": f"sqlite:///{tmp_path}/synthmon.db",
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_API_URL": slack.api_url,
    }
    config = shipped_config_with_short_intervals(tmp_path / "synthmon.yaml", free_port())
    daemon = start_daemon(config, daemon_env, tmp_path, "seed")
    try:
        wait_for(
            lambda: all((daemon.get_json("/readyz") or {}).get("probes", {}).get(p) for p in INTERVALS),
            "a first run of every probe",
            timeout_s=120,
        )
        assert roots(slack) == []
        faults.set_faults("artifacts-404", "registry-health-503")
        wait_for(
            lambda: roots(slack) and all(a in root_now(slack) for a in AFFECTED),
            "one root listing the three affected steps",
            timeout_s=150,
        )
        assert len(roots(slack)) == 1, [r.body.get("text") for r in roots(slack)]
        root = root_now(slack)
        assert "Artifact storage not deployed" in root
        assert "Root cause at" in root
        assert "artifact_roundtrip/upload" in root
        # Later symptoms went into the thread, never as new roots.
        assert all(r.body["thread_ts"] for r in replies(slack))

        faults.clear_faults()
        wait_for(
            lambda: any("resolved after" in shown(r) for r in replies(slack)),
            "the resolution in the thread",
            timeout_s=150,
        )
        assert len(roots(slack)) == 1
        resolutions = [r for r in replies(slack) if "resolved after" in shown(r)]
        assert len(resolutions) == 1
        final = root_now(slack)
        assert "resolved after" in final
        assert all(a in final for a in AFFECTED)
    finally:
        code = daemon.stop()
    assert code == 0
    with slack.lock:
        bodies = json.dumps([r.body for r in slack.requests])
    assert sandbox.keys.admin not in bodies
    assert TOKEN not in bodies
