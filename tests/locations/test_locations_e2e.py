"""End to end: three daemons in three locations on one PostgreSQL store, the real sandbox, a fake
Slack. Location ``c`` reaches the sandbox through a loopback TCP proxy (:mod:`tcpproxy`).

- c's proxy starts resetting its traffic: c sees every probe failing, a and b see a healthy
  platform → no Slack message at all; c's failure shows per location (API, log, metric);
- proxy back, then a platform fault seen by all three (``artifacts-404``) → exactly one thread
  root, naming the locations that see it; cleared → exactly one resolution in that thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from sandbox.control import FaultControl
from sandbox.core import Sandbox
from tests.alerting.alerting_e2e_daemon import (
    DaemonProcess,
    assert_no_secret,
    dump_tables,
    free_port,
    logged_events,
    start_daemon,
    wait_for,
)
from tests.alerting.fakeslack import TOKEN, FakeSlack, fake_slack
from tests.alerting.test_alerting_seed_replay import replies, roots, shown
from tests.history.history_helpers import PG_SKIP_REASON, PG_URL, pg_schema_url
from tests.locations.tcpproxy import TcpProxy

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.postgres,
    pytest.mark.timeout(480),
    pytest.mark.skipif(PG_URL is None, reason=PG_SKIP_REASON),
]

PROBES = ("auth", "alb_health", "artifact_roundtrip")
GOOD = ("PASS", "DEGRADED")


def write_config(path: Path, port: int, location: str | None) -> Path:
    """A daemon config: the three fast probes on short intervals, thresholds 2/2, quorum 2 in 30 s."""
    placed = f"location: {location}\n" if location else ""
    path.write_text(
        f"""\
environment: e2e-locations
{placed}listen: 127.0.0.1:{port}
store:
  url: ${{SYNTHMON_STORE_URL}}
alerting:
  rules: {{failure_threshold: 2, success_threshold: 2, reminder_interval: 0}}
  quorum: {{min_locations: 2, window: 30s}}
  slack:
    bot_token: ${{SLACK_BOT_TOKEN}}
    channel: ${{SLACK_CHANNEL}}
    api_url: ${{SLACK_API_URL}}
  outbox: {{dispatch_interval: 0.5, backoff_base: 1, backoff_max: 5, lease: 60}}
secrets:
  api_key: ${{SYNTHMON_API_KEY}}
probes:
  - name: auth
    kind: auth
    interval: 3s
    timeout: 3s
    options:
      auth_url: ${{AUTH_URL}}
      service_id: platform
      required_scopes: [read, write]
  - name: alb_health
    kind: alb_health
    interval: 3s
    timeout: 3s
    options:
      auth_url: ${{AUTH_URL}}
      registry_url: ${{REGISTRY_URL}}
      checks:
        - {{name: auth_health, target: auth, path: /health}}
        - {{name: registry_health, target: registry, path: /health}}
  - name: artifact_roundtrip
    kind: artifact_roundtrip
    interval: 2s
    timeout: 20s
    allow_timeout_over_interval: true
    depends_on: [auth]
    options:
      registry_url: ${{REGISTRY_URL}}
      prefix: synthmon-e2e-locations
      payload_bytes: 4096
"""
    )
    return path


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fresh fake Slack API for one test."""
    with fake_slack() as fake:
        yield fake


def _proxy_for(url: str) -> TcpProxy:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return TcpProxy(parts.hostname, parts.port)


def cells(daemon: DaemonProcess) -> dict[tuple[str, str], dict[str, Any]]:
    """``/api/v1/locations``: (probe, location) -> its cell (empty while not answering)."""
    body = daemon.get_json("/api/v1/locations")
    return {(c["probe"], c["location"]): c for c in body["probes"]} if body else {}


def runs_from(daemon: DaemonProcess, probe: str, location: str, status: tuple[str, ...]) -> int:
    """How many stored runs of ``probe`` made from ``location`` ended in one of ``status``."""
    body = daemon.get_json(f"/api/v1/runs?probe={probe}&since=1h&limit=1000")
    runs = body["runs"] if body else []
    return sum(1 for r in runs if r["location"] == location and r["status"] in status)


def wait_more_runs(daemon: DaemonProcess, probe: str, location: str, status: tuple[str, ...], n: int) -> None:
    """Wait until ``n`` more runs of ``probe`` from ``location`` with ``status`` are stored."""
    before = runs_from(daemon, probe, location, status)
    wait_for(
        lambda: runs_from(daemon, probe, location, status) >= before + n,
        f"{n} more {status} runs of {probe} from {location}",
        timeout_s=90,
    )


def test_one_zone_blip_never_pages_while_a_platform_fault_pages_once_naming_the_locations(
    sandbox: Sandbox, faults: FaultControl, slack: FakeSlack, tmp_path: Path
) -> None:
    """c alone failing (its network): no Slack message, c shown failing; a fault seen by all three:
    one root naming the locations, one resolution."""
    assert PG_URL is not None
    env = sandbox.env()
    with (
        pg_schema_url(PG_URL) as store_url,
        _proxy_for(env["AUTH_URL"]) as auth_proxy,
        _proxy_for(env["REGISTRY_URL"]) as registry_proxy,
    ):
        common = {
            "SYNTHMON_API_KEY": env["SYNTHMON_API_KEY"],
            "SYNTHMON_STORE_URL": store_url,
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_CHANNEL": "#synthmon-e2e",
            "SLACK_API_URL": slack.api_url,
        }
        direct = {**common, "AUTH_URL": env["AUTH_URL"], "REGISTRY_URL": env["REGISTRY_URL"]}
        proxied = {**common, "AUTH_URL": auth_proxy.url(), "REGISTRY_URL": registry_proxy.url()}
        daemons: list[DaemonProcess] = []
        try:
            # a and b name their location in the environment, c in its config file.
            for name, location_env, location_cfg, target in (
                ("a", "a", None, direct),
                ("b", "b", None, direct),
                ("c", "", "c", proxied),
            ):
                config = write_config(tmp_path / f"synthmon-{name}.yaml", free_port(), location_cfg)
                daemons.append(
                    start_daemon(config, {**target, "SYNTHMON_LOCATION": location_env}, tmp_path, name)
                )
            a, _, c = daemons

            def all_good() -> bool:
                body = a.get_json("/api/v1/locations")
                if not body or sorted(p["location"] for p in body["locations"] if p["live"]) != [
                    "a",
                    "b",
                    "c",
                ]:
                    return False
                seen = cells(a)
                return all(
                    seen.get((p, loc), {}).get("status") in GOOD for p in PROBES for loc in ("a", "b", "c")
                )

            wait_for(all_good, "every probe passing from a, b and c", timeout_s=120)

            # --- c's network drops: c fails alone, nobody is paged ------------------------------
            auth_proxy.drop()
            registry_proxy.drop()
            wait_for(
                lambda: all(cells(a).get((p, "c"), {}).get("failing") for p in PROBES),
                "location c failing every probe",
            )
            # Well past the failure threshold (2), while a and b keep passing.
            wait_more_runs(a, "artifact_roundtrip", "c", ("FAIL",), 3)
            wait_more_runs(a, "artifact_roundtrip", "a", GOOD, 3)
            assert slack.posted("chat.postMessage") == []
            assert a.get_json("/api/v1/incidents?open=1") == {"incidents": []}
            seen = cells(a)
            assert not any(seen[(p, loc)]["failing"] for p in PROBES for loc in ("a", "b"))
            assert logged_events(c, "location_failing"), "c logs that it fails without a quorum"
            metrics = httpx.get(c.url + "/metrics", timeout=5).text
            assert 'synthmon_location_failing{location="c",probe="artifact_roundtrip"} 1.0' in metrics
            assert 'synthmon_probe_success{location="c",probe="artifact_roundtrip"} 0.0' in metrics
            page = httpx.get(a.url + "/", timeout=10).text
            assert "id='locations'" in page
            assert "failing here" in page

            auth_proxy.restore()
            registry_proxy.restore()
            wait_for(
                lambda: not any(v.get("failing") for v in cells(a).values()) and len(cells(a)) == 9,
                "location c passing again",
            )
            assert slack.posted("chat.postMessage") == []

            # --- a platform fault, seen from everywhere: one page naming the locations ------------
            faults.set_faults("artifacts-404")
            root = wait_for(lambda: roots(slack), "the Slack thread root")[0]
            for loc in ("a", "b", "c"):
                wait_more_runs(a, "artifact_roundtrip", loc, ("FAIL",), 2)
            assert len(roots(slack)) == 1, [r.body.get("text") for r in roots(slack)]
            text = shown(root)
            assert "seen from" in text
            named = [loc for loc in ("a, b", "a, c", "b, c", "a, b, c") if f"seen from {loc}" in text]
            assert named, text  # the quorum (2 of 3) at least

            faults.clear_faults()
            wait_for(lambda: replies(slack), "the resolution reply")
            for loc in ("a", "b", "c"):
                wait_more_runs(a, "artifact_roundtrip", loc, GOOD, 2)
            assert len(roots(slack)) == 1
            thread = replies(slack)
            assert len(thread) == 1, [r.body.get("text") for r in thread]
            assert "resolved" in shown(thread[0])
            edits = slack.posted("chat.update")
            assert edits
            assert "seen from a, b, c" in shown(edits[-1])
        finally:
            faults.clear_faults()
            codes = [d.stop() for d in daemons]
        assert codes == [0, 0, 0]
        secrets = [env["SYNTHMON_API_KEY"], TOKEN]
        for daemon in daemons:
            assert_no_secret(daemon.logs(), secrets, f"daemon {daemon.port} logs")
        assert_no_secret(dump_tables(store_url), secrets, "stored rows")
        assert_no_secret(json.dumps([r.body for r in slack.requests]), secrets, "Slack payloads")
