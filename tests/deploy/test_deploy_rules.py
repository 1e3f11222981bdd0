"""The Prometheus alert rules: promtool accepts them, their unit tests pass, and each is complete."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "dashboards" / "rules"
RULES = RULES_DIR / "synthmon.rules.yml"
RULE_TESTS = RULES_DIR / "synthmon.rules.test.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

needs_promtool = pytest.mark.skipif(
    not Path(PROMTOOL).exists(), reason="promtool not installed (.ci/run installs Debian's prometheus)"
)


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def _cases() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    return [case for test in doc["tests"] for case in test.get("alert_rule_test", [])]


@needs_promtool
def test_promtool_check_rules_accepts_the_rules_file() -> None:
    """`promtool check rules` finds every rule valid (PromQL parses, templates compile)."""
    proc = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in proc.stdout


@needs_promtool
def test_promtool_rule_unit_tests_pass() -> None:
    """`promtool test rules` passes: each alert fires (labels and annotations exact) and stays quiet."""
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    """Each alert rule is covered by a test case that expects it and one that expects silence."""
    cases = _cases()
    for rule in _alert_rules():
        name = rule["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no firing case"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no non-firing case"


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    """On-call gets a routable severity, a summary, a description and a runbook hint with every alert."""
    names = [rule["alert"] for rule in _alert_rules()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key, "").strip(), f"{rule['alert']}: missing {key}"
        anchor = f"docs/deploy.md#runbook-{rule['alert'].lower()}"
        assert anchor in annotations["runbook"], f"{rule['alert']}: runbook does not point at {anchor}"


def test_every_runbook_anchor_exists_in_the_deploy_docs() -> None:
    """The runbook hints point at headings that exist in docs/deploy.md."""
    docs = (RULES_DIR.parents[1] / "docs" / "deploy.md").read_text()
    headings = {line.lstrip("#").strip().lower() for line in docs.splitlines() if line.startswith("#")}
    for rule in _alert_rules():
        assert f"runbook: {rule['alert'].lower()}" in headings, f"no '### Runbook: {rule['alert']}' heading"


def test_rules_cover_the_failure_modes_the_monitor_must_page_on() -> None:
    """The rules include failing, stale, absent/down, missed runs, degradation and notification alerts."""
    names = {rule["alert"] for rule in _alert_rules()}
    assert {
        "SynthmonProbeFailing",
        "SynthmonProbeStale",
        "SynthmonAbsent",
        "SynthmonTargetDown",
        "SynthmonMissedRuns",
        "SynthmonProbeDegraded",
        "SynthmonProbeSlowerThanUsual",
        "SynthmonNotificationsFailing",
    } <= names
