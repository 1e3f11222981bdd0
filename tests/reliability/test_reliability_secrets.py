"""One secret scan over every surface synthmon has: neither the API key, nor the Slack bot token, nor
a store password appears anywhere -- plain, URL-encoded, base64, hex, or as a long piece of it.

The surfaces come from real runs: `synthmon run` against the sandbox with a fake Slack (bot token),
paging on artifacts-404 and resolving; a second `synthmon run` whose PostgreSQL store refuses its
password (or is not there); `synthmon once` in every format, `report`, `history --format json`,
`check-config`, `migrate`, and invalid configs that carry the secrets into error messages. Each
surface must be non-empty and hold what it is supposed to hold, so the scan cannot pass vacuously.
A failure names the secret, the form and the surface -- never the secret itself.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
from sqlalchemy.engine import make_url

from sandbox.control import FaultControl
from sandbox.core import Sandbox
from tests.alerting import fakeslack
from tests.alerting.alerting_e2e_daemon import (
    DaemonProcess,
    free_port,
    start_daemon,
    statuses,
    wait_for,
    write_config,
)
from tests.history.history_helpers import PG_URL

REPO = Path(__file__).resolve().parents[2]
PROBE = "artifact_roundtrip"
#: The daemon's API routes and the status page.
ROUTES = (
    "/api/v1/status",
    f"/api/v1/runs?probe={PROBE}&since=1h&limit=1000",
    "/api/v1/runs?since=1h",
    "/api/v1/incidents",
    "/api/v1/store",
    "/",
)
#: How long a run of a secret may appear before it counts as a leak (a prefix or a suffix shown).
WINDOW = 10


@dataclass(frozen=True)
class Secret:
    """A secret and the user name that goes with it in ``user:secret`` (Basic auth, URLs)."""

    name: str
    value: str
    prefix: str = ""  # the public, format-giving start ("hk_test_", "xoxb-"): not a secret by itself
    user: str = ""

    def forms(self) -> dict[str, bytes]:
        """Every plausible encoding of the secret, by name."""
        raw = self.value.encode()
        out = {
            "plain": raw,
            "url-encoded": quote(self.value, safe="").encode(),
            "form-encoded": quote_plus(self.value).encode(),
            "base64": base64.b64encode(raw).rstrip(b"="),
            "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
            "hex": raw.hex().encode(),
        }
        if self.user:
            out["basic-auth"] = base64.b64encode(f"{self.user}:{self.value}".encode()).rstrip(b"=")
        secret_part = self.value.removeprefix(self.prefix)
        for i in range(len(secret_part) - WINDOW + 1):
            out[f"piece@{i}"] = secret_part[i : i + WINDOW].encode()
        return out


@dataclass
class Surfaces:
    """Everything collected, by surface name. Never shown in a failure: it may hold the secrets."""

    found: dict[str, bytes] = field(default_factory=dict, repr=False)

    def add(self, name: str, content: str | bytes, must_hold: str) -> None:
        """Keep ``content`` as surface ``name`` -- if it is non-empty and holds ``must_hold`` (proof it is
        the surface it should be). Failures skip the traceback, whose arguments would show the content."""
        data = content.encode() if isinstance(content, str) else content
        if not data:
            pytest.fail(f"surface {name} is empty", pytrace=False)
        if must_hold.encode() not in data:
            pytest.fail(f"surface {name} lacks {must_hold!r}: not the surface it should be", pytrace=False)
        if name in self.found:
            pytest.fail(f"surface {name} collected twice", pytrace=False)
        self.found[name] = data


def leaks(scan: list[Secret], found: dict[str, bytes]) -> list[str]:
    """``"<secret> (<form>) in <surface>"`` for every form of every secret found: names only."""
    return [
        f"{secret.name} ({form}) in {surface}"
        for secret in scan
        for form, needle in secret.forms().items()
        for surface, data in found.items()
        if needle in data
    ]


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=cwd,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=120,
    )


def _add_cli(surfaces: Surfaces, name: str, proc: subprocess.CompletedProcess[bytes], must_hold: str) -> None:
    """stdout and stderr together: whatever the command printed."""
    surfaces.add(name, proc.stdout + b"\n--stderr--\n" + proc.stderr, must_hold)


def _scrape(surfaces: Surfaces, daemon: DaemonProcess, tag: str, api_hold: str, page_hold: str) -> None:
    """/metrics, every API route and the status page of a running daemon. Each API answer must hold
    ``api_hold``, the page ``page_hold``; /api/v1/store says whether the store is ready."""
    surfaces.add(f"{tag} /metrics", httpx.get(daemon.url + "/metrics", timeout=10).content, "synthmon_")
    for route in ROUTES:
        body = httpx.get(daemon.url + route, timeout=10).content
        hold = {"/": page_hold, "/api/v1/store": "ready"}.get(route, api_hold)
        surfaces.add(f"{tag} GET {route}", body, hold)


def test_the_scan_finds_every_encoding_and_a_piece_but_not_a_mask() -> None:
    """Each encoding a leak could take is found, and so is a prefix shown for "recognition"; the
    mask and the public prefix alone are not leaks."""
    key = Secret("key", "hk_" + "live_" + "Q7x" * 10, prefix="hk_live_", user="svc")
    raw = key.value.encode()
    leaked = {
        "plain": b"error: got " + raw,
        "url": b"GET /x?key=" + quote(key.value, safe="").encode(),
        "basic": b"Authorization: Basic " + base64.b64encode(b"svc:" + raw),
        "base64": b"token=" + base64.urlsafe_b64encode(raw),
        "prefix": b"key " + raw[:20] + b"...",
    }
    assert {hit.rsplit(" in ", 1)[1] for hit in leaks([key], leaked)} == set(leaked)
    clean = {"masked": b"api_key: '**********' hk_live_... Q7x"}
    assert leaks([key], clean) == []


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[fakeslack.FakeSlack]:
    """The fake Slack, accepting a bot token of this test's own (distinct from every other string)."""
    monkeypatch.setattr(fakeslack, "TOKEN", "xoxb-" + "7" * 12 + "-" + secrets.token_hex(12))
    with fakeslack.fake_slack() as fake:
        yield fake


@pytest.mark.sandbox
@pytest.mark.timeout(400)
def test_no_secret_on_any_surface(
    sandbox: Sandbox, faults: FaultControl, slack: fakeslack.FakeSlack, tmp_path: Path
) -> None:
    """API key, Slack token and store password: absent from logs, metrics, API, status page, DB bytes,
    Slack payloads, reports, CLI output and error messages -- every one of them collected."""
    api_key = sandbox.keys.admin
    password = "pw-" + secrets.token_hex(12)
    pg = make_url(PG_URL) if PG_URL else None
    # With PostgreSQL here the server refuses the password; without, nothing listens on the port.
    pg_host, pg_port = (pg.host or "127.0.0.1", pg.port or 5432) if pg else ("127.0.0.1", free_port())
    pg_url = f"postgresql+psycopg://synthmon:{password}@{pg_host}:{pg_port}/synthmon_test"
    scan = [
        Secret("api key", api_key, prefix=api_key[: api_key.index("_", 3) + 1]),
        Secret("slack token", fakeslack.TOKEN, prefix="xoxb-" + "7" * 12 + "-"),
        Secret("store password", password, prefix="pw-", user="synthmon"),
    ]
    store_url = f"sqlite:///{tmp_path}/synthmon.db"
    env = {
        "AUTH_URL": sandbox.auth_url,
        "REGISTRY_URL": sandbox.registry_url,
        "SYNTHMON_API_KEY": api_key,
        "SYNTHMON_STORE_URL": store_url,
        "SLACK_BOT_TOKEN": fakeslack.TOKEN,
        "SLACK_CHANNEL": "#secret-scan",
        "SLACK_API_URL": slack.api_url,
    }
    surfaces = Surfaces()
    config = write_config(tmp_path / "synthmon.yaml", port=free_port())

    # 1. The daemon pages on artifacts-404 and resolves: logs, metrics, API, page, DB, Slack.
    daemon = start_daemon(config, env, tmp_path, "daemon")
    try:
        wait_for(lambda: len(daemon.runs(PROBE)) >= 2, "first runs")
        faults.set_faults("artifacts-404")
        wait_for(lambda: slack.posted(), "the page")
        faults.clear_faults()
        wait_for(lambda: len(slack.posted()) >= 2, "the resolution")
        wait_for(lambda: statuses(daemon.runs(PROBE))[:1] == ["PASS"], "a good run after the fault")
        _scrape(surfaces, daemon, "daemon", api_hold=PROBE, page_hold="<html")
        wal = Path(f"{tmp_path}/synthmon.db-wal")
        surfaces.add("SQLite -wal bytes (running)", wal.read_bytes(), PROBE)
    finally:
        assert daemon.stop() == 0
    surfaces.add("daemon log", daemon.logs(), "incident_event")
    surfaces.add("SQLite file bytes", Path(f"{tmp_path}/synthmon.db").read_bytes(), PROBE)
    with slack.lock:
        bodies = json.dumps([{"path": r.path, "body": r.body} for r in slack.requests])
    surfaces.add("Slack payloads", bodies, "artifact route not deployed")

    # 2. The CLI against the same store and the failing platform.
    faults.set_faults("artifacts-404")
    commands = [
        (["once", "--format", "json"], "artifact_route_not_deployed"),
        (["once", "--format", "junit"], "<testsuite"),
        (["once", "--format", "table"], "FAIL"),
    ]
    for args, hold in commands:
        _add_cli(surfaces, " ".join(args), _cli([*args, "--config", str(config)], env, tmp_path), hold)
    faults.clear_faults()
    commands = [
        (["report"], PROBE),
        (["history", "--format", "json"], PROBE),
        (["check-config"], "**********"),
    ]
    for args, hold in commands:
        _add_cli(surfaces, " ".join(args), _cli([*args, "--config", str(config)], env, tmp_path), hold)

    # 3. A store that refuses the password (or is not there): the daemon runs on, and says why.
    pg_env = {**env, "SYNTHMON_STORE_URL": pg_url}
    pg_config = write_config(tmp_path / "synthmon-pg.yaml", port=free_port())
    pg_daemon = start_daemon(pg_config, pg_env, tmp_path, "pg-daemon")
    try:
        wait_for(lambda: "store.unavailable" in pg_daemon.logs(), "the store outage logged")
        # Without its store the API answers its JSON error and the status page says it cannot read it.
        _scrape(
            surfaces,
            pg_daemon,
            "pg daemon",
            api_hold="store not ready",
            page_hold="Status unavailable: the history store cannot be read",
        )
    finally:
        assert pg_daemon.stop() == 0
    surfaces.add("pg daemon log", pg_daemon.logs(), "store.unavailable")
    for args in (["history", "--format", "json"], ["report"], ["migrate"], ["check-config"]):
        proc = _cli([*args, "--config", str(pg_config)], pg_env, tmp_path)
        _add_cli(
            surfaces, f"{args[0]} (store refusing)", proc, "store" if args[0] != "check-config" else "url"
        )

    # 4. Invalid configs that carry the secrets into fields that fail validation.
    bad = [
        ("listen (api key)", "listen: ", "listen: ${SYNTHMON_API_KEY}", "listen"),
        ("listen (store url)", "listen: ", "listen: ${SYNTHMON_STORE_URL}", "listen"),
        ("slack api_url (token)", "    api_url: ", "    api_url: ${SLACK_BOT_TOKEN}", "api_url"),
    ]
    for what, start, line, hold in bad:
        lines = config.read_text().splitlines()
        assert any(x.startswith(start) for x in lines)
        path = tmp_path / f"bad-{len(surfaces.found)}.yaml"
        path.write_text("\n".join(line if x.startswith(start) else x for x in lines) + "\n")
        for command in ("check-config", "run"):
            proc = _cli([command, "--config", str(path)], pg_env, tmp_path)
            code = proc.returncode  # a local: a failing assert on proc would show its output
            assert code == 2, (what, command)
            _add_cli(surfaces, f"{command}, bad {what}", proc, hold)

    # The scan: every form of every secret, over every surface.
    assert len(surfaces.found) >= 30, sorted(surfaces.found)
    assert leaks(scan, surfaces.found) == []
