"""The shipped Alertmanager example, checked by amtool, and the whole alert path on real processes.

The real-stack test runs, all on loopback: `synthmon run` against the sandbox; a real Prometheus
(Debian's ``prometheus``) scraping it every second with the shipped rules loaded; a real Alertmanager
(Debian's ``prometheus-alertmanager``) with the shipped example's routes and inhibitions; and a small
HTTP server standing in for the receivers. The sandbox fault ``artifacts-404`` must make
``SynthmonProbeFailing`` reach the production pager receiver with its labels and runbook_url, and
clearing the fault must resolve it there.

Two things are shortened, and only these, so that the test takes seconds instead of minutes:

- the rules are a copy of ``dashboards/rules/synthmon.rules.yml`` with every ``for:`` set to
  ``FOR`` (expressions, labels and annotations untouched);
- the Alertmanager config is ``deploy/alertmanager.yml`` with each receiver's integrations replaced
  by one ``webhook_configs`` entry to the loopback server (path = receiver name) and the route
  timings (``group_wait``, ``group_interval``, ``repeat_interval``) shortened; ``route`` matchers,
  ``inhibit_rules`` and ``time_intervals`` are the shipped ones.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.control import FaultControl
from sandbox.core import Sandbox
from tests.alerting.alerting_e2e_daemon import assert_no_secret, free_port, start_daemon

from .dockerfile import ROOT

AM_EXAMPLE = ROOT / "deploy" / "alertmanager.yml"
PROM_EXAMPLE = ROOT / "deploy" / "prometheus.yml"
RULES = ROOT / "dashboards" / "rules" / "synthmon.rules.yml"
DEPLOY_DOCS = ROOT / "docs" / "deploy.md"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
#: The ``for:`` every rule gets in the real-stack test (see the module docstring).
FOR = "2s"
PROBE = "artifact_roundtrip"

needs_amtool = pytest.mark.skipif(
    not Path(AMTOOL).exists(), reason="amtool not installed (.ci/run installs prometheus-alertmanager)"
)


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


def _receiver(config: Path, *labels: str) -> str:
    """The receiver(s) the routing tree of ``config`` picks for an alert with ``labels``."""
    proc = _amtool("config", "routes", "test", f"--config.file={config}", *labels)
    # Exit 0 and the receiver names on stdout (a warning about --alertmanager.url goes to stderr).
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


@needs_amtool
def test_shipped_alertmanager_example_passes_amtool_check_config() -> None:
    """`amtool check-config deploy/alertmanager.yml` accepts the example (strict: unknown keys fail)."""
    proc = _amtool("check-config", str(AM_EXAMPLE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    assert "2 receivers" in proc.stdout
    assert "2 inhibit rules" in proc.stdout


@needs_amtool
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ("alertname=SynthmonProbeFailing", "severity=critical", "environment=production", "probe=auth"),
            "pager",
        ),
        (("alertname=SynthmonAbsent", "severity=critical", "environment=production"), "pager"),
        (
            ("alertname=SynthmonProbeFailing", "severity=critical", "environment=staging", "probe=auth"),
            "team",
        ),
        (
            ("alertname=SynthmonProbeDegraded", "severity=warning", "environment=production", "probe=auth"),
            "team",
        ),
        (("alertname=SynthmonAbsent", "severity=critical"), "team"),
    ],
    ids=["prod-critical", "prod-absent", "staging-critical", "prod-warning", "absent-everywhere"],
)
def test_example_routes_production_criticals_to_the_pager(labels: tuple[str, ...], receiver: str) -> None:
    """Production's critical alerts page; warnings, staging and label-less alerts go to the channel."""
    assert _receiver(AM_EXAMPLE, *labels) == f"synthmon-{receiver}"


def _docs_yaml_after(marker: str) -> str:
    """The first ```yaml block of docs/deploy.md after ``marker``."""
    text = DEPLOY_DOCS.read_text()
    block = re.search(r"```yaml\n(.*?)```", text[text.index(marker) :], re.S)
    assert block, f"no yaml block after {marker!r}"
    return block.group(1)


@needs_amtool
def test_documented_blackhole_route_keeps_platform_alerts_out_of_alertmanager(tmp_path: Path) -> None:
    """The docs' route for "platform failures in synthmon's Slack only" works when added as documented."""
    config = yaml.safe_load(AM_EXAMPLE.read_text())
    route = yaml.safe_load(_docs_yaml_after("To keep platform failures in synthmon's Slack threads only"))
    config["route"]["routes"].insert(0, route[0])
    config["receivers"].append({"name": "blackhole"})
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    assert _amtool("check-config", str(path)).returncode == 0
    prod = ("severity=critical", "environment=production")
    assert _receiver(path, "alertname=SynthmonProbeFailing", "probe=auth", *prod) == "blackhole"
    assert _receiver(path, "alertname=SynthmonTargetDown", *prod) == "synthmon-pager"


def test_prometheus_example_sends_alerts_to_alertmanager() -> None:
    """deploy/prometheus.yml has an `alerting:` block (API v2) next to the rule files it loads."""
    config = yaml.safe_load(PROM_EXAMPLE.read_text())
    (am,) = config["alerting"]["alertmanagers"]
    assert am["api_version"] == "v2"
    (static,) = am["static_configs"]
    assert all(re.fullmatch(r"[\w.-]+:9093", t) for t in static["targets"])
    assert [Path(f).name for f in config["rule_files"]] == [RULES.name, "synthmon-slo.rules.yml"]


# --- the real stack -------------------------------------------------------------------------------


class Receivers:
    """A loopback HTTP server recording Alertmanager's webhook notifications (path = receiver)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        self.bodies: list[str] = []

    def find(self, status: str, alertname: str, probe: str) -> tuple[str, dict[str, Any]] | None:
        """The first (receiver path, alert) with that status, alert name and probe, if any."""
        with self.lock:
            for path, body in self.notifications:
                for alert in body.get("alerts", []):
                    labels = alert["labels"]
                    if (alert["status"], labels.get("alertname"), labels.get("probe")) == (
                        status,
                        alertname,
                        probe,
                    ):
                        return path, alert
        return None


@contextmanager
def receivers() -> Iterator[tuple[Receivers, str]]:
    """Serve a :class:`Receivers` on a free loopback port; yields it and its base URL."""
    state = Receivers()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            with state.lock:
                state.bodies.append(raw)
                state.notifications.append((self.path, json.loads(raw)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test reports what it received itself."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="receivers", daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def shortened_rules(path: Path) -> Path:
    """A copy of the shipped rules with every `for:` set to FOR; written to ``path``."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def alertmanager_config(path: Path, receivers_url: str) -> Path:
    """The shipped example with loopback webhook receivers and short route timings; written to ``path``."""
    doc = yaml.safe_load(AM_EXAMPLE.read_text())
    timings = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}

    def shorten(route: dict[str, Any], root: bool) -> None:
        # Children inherit the root's timings; override only those they set themselves.
        for key, value in timings.items():
            if root or key in route:
                route[key] = value
        for child in route.get("routes", []):
            shorten(child, root=False)

    shorten(doc["route"], root=True)
    doc["receivers"] = [
        {
            "name": r["name"],
            "webhook_configs": [{"url": f"{receivers_url}/{r['name']}", "send_resolved": True}],
        }
        for r in doc["receivers"]
    ]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback http only
            return json.load(resp)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback http only
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def process(argv: list[str], log: Path, ready_url: str, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output to ``log``) until the block ends; wait until ``ready_url`` answers 200."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        poll(lambda: _ready(ready_url) or _exited(proc, log, name), f"{name} ready", 60)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _exited(proc: subprocess.Popen[bytes], log: Path, name: str) -> bool:
    if proc.poll() is not None:
        pytest.fail(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
    return False


def poll(check: Callable[[], Any], what: str, timeout_s: float) -> Any:
    """Call ``check`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.2)


def daemon_config(path: Path, port: int) -> Path:
    """auth and artifact_roundtrip every 2 s against the sandbox, no Slack: the metrics are the point."""
    path.write_text(
        f"""\
environment: production
listen: 127.0.0.1:{port}
store:
  url: ${{SYNTHMON_STORE_URL}}
secrets:
  api_key: ${{SYNTHMON_API_KEY}}
probes:
  - name: auth
    kind: auth
    interval: 2s
    timeout: 2s
    options:
      auth_url: ${{AUTH_URL}}
      service_id: platform
      required_scopes: [read, write]
  - name: {PROBE}
    kind: {PROBE}
    interval: 2s
    # A loaded 2-core machine can be slow; a timeout would be a different failure.
    timeout: 20s
    allow_timeout_over_interval: true
    depends_on: [auth]
    options:
      registry_url: ${{REGISTRY_URL}}
      prefix: synthmon-deploy-e2e
      payload_bytes: 4096
"""
    )
    return path


def prometheus_config(path: Path, rules: Path, target: str, alertmanager: str) -> Path:
    """Scrape job `synthmon` (environment production) every second; alerts to ``alertmanager``."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {
            "alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": [alertmanager]}]}]
        },
        "scrape_configs": [
            {
                "job_name": "synthmon",
                "static_configs": [{"targets": [target], "labels": {"environment": "production"}}],
            }
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _runbook_url(alert: str) -> str:
    """The runbook_url the shipped rules carry for ``alert`` (read from the rules file itself)."""
    doc = yaml.safe_load(RULES.read_text())
    (url,) = {
        r["annotations"]["runbook_url"] for g in doc["groups"] for r in g["rules"] if r["alert"] == alert
    }
    assert isinstance(url, str)
    return url


@pytest.mark.sandbox
@pytest.mark.timeout(300)
@pytest.mark.skipif(
    not (Path(PROMETHEUS).exists() and Path(ALERTMANAGER).exists()),
    reason="prometheus / prometheus-alertmanager not installed (.ci/run installs both)",
)
def test_sandbox_fault_pages_through_prometheus_and_alertmanager_then_resolves(
    sandbox: Sandbox, faults: FaultControl, tmp_path: Path
) -> None:
    """artifacts-404 -> SynthmonProbeFailing at the pager (labels, runbook_url) -> clear -> resolved."""
    env = sandbox.env()
    daemon_env = {
        "AUTH_URL": env["AUTH_URL"],
        "REGISTRY_URL": env["REGISTRY_URL"],
        "SYNTHMON_API_KEY": env["SYNTHMON_API_KEY"],
        "SYNTHMON_STORE_URL": f"sqlite:///{tmp_path}/synthmon.db",
    }
    daemon_port, prom_port, am_port = free_port(), free_port(), free_port()
    target, am = f"127.0.0.1:{daemon_port}", f"127.0.0.1:{am_port}"
    with receivers() as (received, receivers_url):
        am_argv = [
            ALERTMANAGER,
            f"--config.file={alertmanager_config(tmp_path / 'alertmanager.yml', receivers_url)}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address={am}",
            "--cluster.listen-address=",  # a single instance: no gossip port
            "--log.level=warn",
        ]
        rules = shortened_rules(tmp_path / "synthmon.rules.yml")
        prom_argv = [
            PROMETHEUS,
            f"--config.file={prometheus_config(tmp_path / 'prometheus.yml', rules, target, am)}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ]
        daemon = start_daemon(
            daemon_config(tmp_path / "synthmon.yaml", daemon_port), daemon_env, tmp_path, "d"
        )
        try:
            with (
                process(am_argv, tmp_path / "alertmanager.log", f"http://{am}/-/ready", "alertmanager"),
                process(
                    prom_argv,
                    tmp_path / "prometheus.log",
                    f"http://127.0.0.1:{prom_port}/-/ready",
                    "prometheus",
                ),
            ):
                query = f"http://127.0.0.1:{prom_port}/api/v1/query?query="

                def passing() -> bool:
                    body = _get_json(query + f'synthmon_probe_success{{probe="{PROBE}"}}==1')
                    return bool(body and body["data"]["result"])

                poll(passing, f"Prometheus to see {PROBE} passing", 90)
                assert received.find("firing", "SynthmonProbeFailing", PROBE) is None

                faults.set_faults("artifacts-404")
                path, alert = poll(
                    lambda: received.find("firing", "SynthmonProbeFailing", PROBE),
                    "SynthmonProbeFailing at a receiver",
                    90,
                )
                assert path == "/synthmon-pager"  # production + critical: the shipped route pages
                assert alert["labels"] == {
                    "alertname": "SynthmonProbeFailing",
                    "severity": "critical",
                    "job": "synthmon",
                    "environment": "production",
                    "probe": PROBE,
                    "status": "FAIL",
                }
                annotations = alert["annotations"]
                assert annotations["runbook_url"] == _runbook_url("SynthmonProbeFailing")
                assert annotations["runbook_url"].startswith("https://")
                assert annotations["summary"] == f"synthmon probe {PROBE} is failing in production"

                faults.clear_faults()
                path, resolved = poll(
                    lambda: received.find("resolved", "SynthmonProbeFailing", PROBE),
                    "the resolved notification",
                    90,
                )
                assert path == "/synthmon-pager"
                assert resolved["labels"] == alert["labels"]
        finally:
            code = daemon.stop()
        assert code == 0
        with received.lock:
            bodies = "\n".join(received.bodies)
        assert_no_secret(bodies, [sandbox.keys.admin], "an Alertmanager notification")
