"""Every dashboard query and every alert rule, run by a real Prometheus against real synthmon series.

One Prometheus per module (``/usr/bin/prometheus`` on a free loopback port, temp storage) scrapes,
every second, a loopback server exposing the daemon's own metric classes fed with simulated runs
(``exposition.py``). The alert rules are loaded too. Once the series are ingested, each panel query
is sent through the HTTP API with the template variables set as a user would set them, and must
parse, evaluate and return finite data.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .exposition import FakeSynthmon, serve
from .grafana import Query, queries, substitute, variable_queries

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
RULES = Path(__file__).resolve().parents[2] / "dashboards" / "rules" / "synthmon.rules.yml"
#: Samples per series to wait for: enough for every rate window the dashboards use (15 s, 1 m).
MIN_SAMPLES = 10

pytestmark = [
    pytest.mark.skipif(
        not Path(PROMETHEUS).exists(),
        reason="prometheus not installed (.ci/run installs Debian's prometheus)",
    ),
    # One test worker runs the module, so the module's Prometheus starts once.
    pytest.mark.xdist_group("prometheus"),
]


@dataclass
class PromAPI:
    """A tiny client for the Prometheus HTTP API (no extra dependency)."""

    base: str
    target: str

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """GET ``path`` with query ``params``; returns the decoded JSON body (errors included)."""
        url = f"{self.base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback http only
                body: dict[str, Any] = json.load(resp)
        except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error as JSON
            text = exc.read().decode("utf-8", "replace")
            try:
                body = json.loads(text)
            except ValueError:  # 503 "Service Unavailable" while the TSDB is still starting
                body = {"status": "error", "errorType": "unavailable", "error": text}
        return body

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query at now."""
        return self.get("/api/v1/query", query=expr)

    def query_range(self, expr: str, seconds: int = 20) -> dict[str, Any]:
        """A range query over the last ``seconds`` with a 1 s step, as a panel would run it."""
        end = time.time()
        return self.get("/api/v1/query_range", query=expr, start=end - seconds, end=end, step=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(
    what: str, check: Callable[[], bool], deadline_s: float, proc: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll ``check`` until it holds; fail with Prometheus' log when the deadline passes or it died."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"prometheus exited with {proc.returncode} while waiting for {what}:\n{log.read_text()}"
            )
        try:
            if check():
                return
        except OSError:
            pass  # not listening yet: keep polling until the deadline
        time.sleep(0.2)
    pytest.fail(f"timed out after {deadline_s}s waiting for {what}:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromAPI]:
    """A real Prometheus scraping a realistic synthmon exposition, with the alert rules loaded."""
    workdir = tmp_path_factory.mktemp("prometheus")
    with serve(FakeSynthmon()) as target:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    # The job name the alert rules select on, and the environment label the
                    # dashboards filter on: as in deploy/prometheus.yml.
                    "job_name": "synthmon",
                    "static_configs": [{"targets": [target], "labels": {"environment": "test"}}],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        log = workdir / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        api = PromAPI(f"http://127.0.0.1:{port}", target)
        try:

            def ingested() -> bool:
                res = api.query(f"min(count_over_time(synthmon_probe_runs_total[1m])) >= {MIN_SAMPLES}")
                return res.get("status") == "success" and bool(res["data"]["result"])

            _wait("the synthmon series to be ingested", ingested, 90, proc, log)
            yield api
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _selections(target: str) -> dict[str, dict[str, str]]:
    """Variable values as a user sets them: everything ("All"), or one environment/instance/probe."""
    return {
        "all": {
            "datasource": "prom",
            "job": ".*",
            "environment": ".*",
            "instance": ".*",
            "probe": ".*",
            "step": ".*",
        },
        "one": {
            "datasource": "prom",
            "job": "synthmon",
            "environment": "test",
            "instance": target,
            "probe": "artifact_roundtrip",
            "step": ".*",
        },
    }


def _values(result: dict[str, Any]) -> list[float]:
    data = result["data"]
    if data["resultType"] == "matrix":
        return [float(v) for series in data["result"] for _, v in series["values"]]
    if data["resultType"] == "vector":
        return [float(series["value"][1]) for series in data["result"]]
    return [float(data["result"][1])]  # scalar


@pytest.mark.parametrize("query", queries(), ids=lambda q: q.id)
def test_panel_query_returns_finite_data_from_real_prometheus(prom: PromAPI, query: Query) -> None:
    """Each dashboard query parses, evaluates and returns finite values, for "All" and for one probe."""
    for name, values in _selections(prom.target).items():
        expr = substitute(query.expr, values)
        result = prom.query(expr) if query.instant else prom.query_range(expr)
        assert result.get("status") == "success", f"[{name}] {expr}\n{result}"
        assert result["data"]["result"], f"[{name}] no data: {expr}"
        finite = [v for v in _values(result) if math.isfinite(v)]
        assert finite, f"[{name}] only NaN/Inf: {expr}"


@pytest.mark.parametrize("var", variable_queries(), ids=lambda v: f"{v[0]}/${v[1]}")
def test_template_variable_finds_label_values(prom: PromAPI, var: tuple[str, str, str]) -> None:
    """Each ``label_values(selector, label)`` variable lists at least one value from real series."""
    _, name, definition = var
    m = re.fullmatch(r"label_values\((.+), (\w+)\)", definition)
    assert m, f"${name}: unexpected definition {definition!r}"
    selector = substitute(m.group(1), _selections(prom.target)["all"])
    res = prom.get("/api/v1/series", **{"match[]": selector})
    assert res.get("status") == "success", res
    found = {series[m.group(2)] for series in res["data"] if m.group(2) in series}
    assert found, f"${name}: no series of {selector} carries label {m.group(2)}"


def test_alert_rules_evaluate_without_errors_on_real_series(prom: PromAPI) -> None:
    """Prometheus evaluates every rule against the real series with health ok and no error."""

    def evaluated() -> bool:
        rules = [r for g in prom.get("/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        return bool(rules) and all(r.get("health") == "ok" for r in rules)

    deadline = time.monotonic() + 30
    while not evaluated() and time.monotonic() < deadline:
        time.sleep(0.2)
    rules = [r for g in prom.get("/api/v1/rules")["data"]["groups"] for r in g["rules"]]
    expected = len([r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]])
    assert len(rules) == expected
    bad = {r["name"]: (r.get("health"), r.get("lastError")) for r in rules if r.get("health") != "ok"}
    assert not bad, bad


def test_alerts_react_to_the_real_series(prom: PromAPI) -> None:
    """A rejected reload (simulated every fifth run) fires SynthmonConfigReloadFailed end to end."""

    def firing() -> set[str]:
        alerts = prom.get("/api/v1/alerts")["data"]["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

    deadline = time.monotonic() + 30
    while "SynthmonConfigReloadFailed" not in firing() and time.monotonic() < deadline:
        time.sleep(0.2)
    now = firing()
    assert "SynthmonConfigReloadFailed" in now
    # The monitor is up and reporting: the "nobody is watching" alerts must stay quiet.
    assert not now & {"SynthmonAbsent", "SynthmonTargetDown", "SynthmonProbeStale"}
