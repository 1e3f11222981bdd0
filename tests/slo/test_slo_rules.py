"""The generated Prometheus rules: the shipped file is the generator's output for config.yaml,
promtool accepts it and its unit tests pass, and a step SLO's rules count the step as synthmon does."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import load_config
from monitor.slo.config import BurnAlert, SloConfig
from monitor.slo.rules import ALERT, RUNBOOK_URL_PATTERN, render_rules

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "dashboards" / "rules"
SHIPPED = RULES_DIR / "synthmon-slo.rules.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

needs_promtool = pytest.mark.skipif(
    not Path(PROMTOOL).exists(), reason="promtool not installed (.ci/run installs Debian's prometheus)"
)


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_shipped_rules_are_the_generator_output_for_the_shipped_config() -> None:
    """dashboards/rules/synthmon-slo.rules.yml cannot drift from config.yaml's slos: (regenerate
    with `synthmon slo rules -o dashboards/rules/synthmon-slo.rules.yml`)."""
    config = load_config(ROOT / "config.yaml", env={"SYNTHMON_API_KEY": "k"})
    expected = render_rules(config.slos, min_locations=config.alerting.quorum.min_locations)
    assert SHIPPED.read_text(encoding="utf-8") == expected


@needs_promtool
def test_promtool_accepts_the_shipped_rules_and_their_unit_tests_pass() -> None:
    """`promtool check rules` and `promtool test rules` (fast burn pages, blips and errors do not)."""
    checked = _promtool("check", "rules", SHIPPED.name, cwd=RULES_DIR)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "synthmon-slo.rules.test.yml", cwd=RULES_DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_alerts_are_routable_and_linked_like_the_other_rules() -> None:
    """Each alert has severity critical/warning, the SLO's name, summary, description and a runbook
    URL built from the same pattern as dashboards/build.py's, pointing at a docs/deploy.md heading."""
    spec = importlib.util.spec_from_file_location(
        "synthmon_rules_build_slo", ROOT / "dashboards" / "build.py"
    )
    assert spec is not None
    assert spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build
    spec.loader.exec_module(build)
    assert build.RUNBOOK_URL_PATTERN == RUNBOOK_URL_PATTERN
    rules = [r for g in yaml.safe_load(SHIPPED.read_text())["groups"] for r in g["rules"] if "alert" in r]
    assert {(r["labels"]["slo"], r["labels"]["severity"]) for r in rules} == {
        ("auth", "critical"),
        ("auth", "warning"),
        ("registration", "critical"),
        ("registration", "warning"),
    }
    for rule in rules:
        assert rule["alert"] == ALERT
        assert set(rule["annotations"]) == {"summary", "runbook_url", "description"}
        assert rule["annotations"]["runbook_url"].endswith("/docs/deploy.md#runbook-synthmonerrorbudgetburn")
    headings = (ROOT / "docs" / "deploy.md").read_text()
    assert re.search(r"^#### Runbook: SynthmonErrorBudgetBurn$", headings, re.M)


STEP_TEST = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # Six healthy hours of runs, then the step "get" FAILs every run; "cleanup" after it is SKIPPED.
      - series: 'synthmon_step_runs_total{probe="auth",step="get",status="PASS"}'
        values: '0+1x360 360x30'
      - series: 'synthmon_step_runs_total{probe="auth",step="get",status="FAIL"}'
        values: '0x360 1+1x30'
      - series: 'synthmon_step_runs_total{probe="auth",step="cleanup",status="PASS"}'
        values: '0+1x360 360x30'
      - series: 'synthmon_step_runs_total{probe="auth",step="cleanup",status="SKIPPED"}'
        values: '0x360 1+1x30'
    alert_rule_test:
      - eval_time: 363m
        alertname: SynthmonErrorBudgetBurn
        exp_alerts: []
      - eval_time: 380m
        alertname: SynthmonErrorBudgetBurn
        exp_alerts:
          - exp_labels: {severity: critical, slo: auth/get, probe: auth, step: get}
            exp_annotations:
              summary: "SLO auth/get is burning its 30-day error budget too fast in "
              runbook_url: "https://runbooks.example.org/synthmonerrorbudgetburn"
              description: "%s"
"""


@needs_promtool
def test_a_step_slo_counts_the_step_and_ignores_skipped_steps(tmp_path: Path) -> None:
    """For a step SLO the rules read synthmon_step_runs_total: the failing step pages; the step
    after it, only SKIPPED, spends nothing (its SLO stays quiet)."""
    pages = (BurnAlert(long=3600, short=300, factor=14.4), BurnAlert(long=6 * 3600, short=1800, factor=6))
    slos = [
        SloConfig(probe="auth", step="get", objective=99.5, alerts=pages),
        SloConfig(probe="auth", step="cleanup", objective=99.5, alerts=pages),
    ]
    (tmp_path / "rules.yml").write_text(
        render_rules(slos, runbook_url_pattern="https://runbooks.example.org/{alert}")
    )
    (alert,) = [
        r
        for g in yaml.safe_load((tmp_path / "rules.yml").read_text())["groups"]
        for r in g["rules"]
        if r.get("labels", {}).get("slo") == "auth/get" and r["labels"]["severity"] == "critical"
    ]
    description = alert["annotations"]["description"]
    # 20 of the last 60 runs failed; the template renders the value the way Prometheus does.
    rendered = description.replace("{{ $value | humanizePercentage }}", "33.33%").replace(
        "{{ $labels.instance }}", ""
    )
    (tmp_path / "test.yml").write_text(STEP_TEST % rendered.replace('"', '\\\\"'))
    tested = _promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_rules_count_runs_as_synthmon_does() -> None:
    """bad = FAIL over checked = PASS|DEGRADED|FAIL, for runs and for steps: ERROR/SKIPPED are out."""
    text = render_rules([SloConfig(probe="auth", objective=99)])
    doc: dict[str, Any] = yaml.safe_load(text)
    records = {r["record"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    expr = records["synthmon:probe_error_ratio:rate1h"]
    assert 'synthmon_probe_runs_total{status="FAIL"}[1h]' in expr
    assert 'synthmon_probe_runs_total{status=~"PASS|DEGRADED|FAIL"}[1h]' in expr
    assert (
        'synthmon_step_runs_total{status=~"PASS|DEGRADED|FAIL"}[30d]'
        in records["synthmon:step_error_ratio:rate30d"]
    )


_QUORUM_CONFIG = """\
environment: production
probes:
  - {name: auth, kind: http, url: "http://127.0.0.1:9/health"}
alerting:
  quorum: {min_locations: %s}
slos:
  - {probe: auth, objective: 99.5}
"""


def test_the_rules_take_the_configured_location_quorum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`synthmon slo rules` judges locations as the daemon does: its short windows need
    alerting.quorum.min_locations locations burning (or all there are); a bad value stops it with
    the field's path."""
    from monitor.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(_QUORUM_CONFIG % 3)
    assert main(["slo", "rules", "--config", str(config)]) == 0
    doc: dict[str, Any] = yaml.safe_load(capsys.readouterr().out)
    (page,) = [
        r for g in doc["groups"] for r in g["rules"] if r.get("labels", {}).get("severity") == "critical"
    ]
    assert "count without (location) (synthmon_location:probe_error_ratio:rate5m" in page["expr"]
    assert re.search(r"clamp_max\(count without \(location\) \([^)]*\), 3\)", page["expr"])

    config.write_text(_QUORUM_CONFIG % 0)
    assert main(["slo", "rules", "--config", str(config)]) == 2
    assert "alerting.quorum.min_locations" in capsys.readouterr().err
