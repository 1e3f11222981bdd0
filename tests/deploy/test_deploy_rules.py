"""The Prometheus alert rules: promtool accepts them, their unit tests pass, each is complete and linked."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "dashboards" / "rules"
RULES = RULES_DIR / "synthmon.rules.yml"
RULE_TESTS = RULES_DIR / "synthmon.rules.test.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

needs_promtool = pytest.mark.skipif(
    not Path(PROMTOOL).exists(), reason="promtool not installed (.ci/run installs Debian's prometheus)"
)


def _build_module() -> ModuleType:
    """dashboards/build.py, which writes the rules' runbook URLs."""
    spec = importlib.util.spec_from_file_location("synthmon_rules_build", RULES_DIR.parent / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve annotations through sys.modules: register before executing.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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
    """Each alert rule (name and severity) has a test case that expects it and one that expects silence."""
    cases = _cases()
    for rule in _alert_rules():
        name, severity = rule["alert"], rule["labels"]["severity"]
        mine = [c for c in cases if c["alertname"] == name]
        fired = [a for c in mine for a in c.get("exp_alerts") or []]
        assert any(a["exp_labels"]["severity"] == severity for a in fired), (
            f"{name}/{severity}: no firing case"
        )
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no non-firing case"


def test_every_alert_has_severity_summary_runbook_url_and_description() -> None:
    """On-call gets a routable severity, a summary, an absolute runbook_url and a description."""
    build = _build_module()
    keys = [(rule["alert"], rule["labels"]["severity"]) for rule in _alert_rules()]
    assert len(keys) == len(set(keys)), "duplicate alert name and severity"
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "runbook_url", "description"}, rule["alert"]
        for key in ("summary", "description"):
            assert annotations[key].strip(), f"{rule['alert']}: empty {key}"
        expected = build.RUNBOOK_URL_PATTERN.format(alert=rule["alert"].lower())
        assert annotations["runbook_url"] == expected, f"{rule['alert']}: run dashboards/build.py"
        parts = urlsplit(annotations["runbook_url"])
        assert parts.scheme == "https"
        assert parts.netloc


def test_every_runbook_url_points_at_a_heading_of_the_deploy_docs() -> None:
    """Each runbook_url names docs/deploy.md and an anchor that is one of its "Runbook:" headings."""
    docs = (RULES_DIR.parents[1] / "docs" / "deploy.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in docs.splitlines()
        if line.startswith("#")
    }
    for rule in _alert_rules():
        parts = urlsplit(rule["annotations"]["runbook_url"])
        assert parts.path.endswith("/docs/deploy.md"), rule["alert"]
        assert parts.fragment == f"runbook-{rule['alert'].lower()}"
        assert parts.fragment in anchors, f"no '#### Runbook: {rule['alert']}' heading in docs/deploy.md"


def test_runbook_url_pattern_writes_a_copy_that_only_changes_the_urls(tmp_path: Path) -> None:
    """`build.py --runbook-url-pattern P --rules-out F` rewrites every runbook_url from P, nothing else."""
    build = _build_module()
    out = tmp_path / "synthmon.rules.yml"
    pattern = "https://wiki.example.org/ops/synthmon/{alert}"
    assert build.main(["--runbook-url-pattern", pattern, "--rules-out", str(out)]) == 0
    original, copy = RULES.read_text().splitlines(), out.read_text().splitlines()
    assert len(original) == len(copy)
    changed = [(a, b) for a, b in zip(original, copy, strict=True) if a != b]
    assert len(changed) == len(_alert_rules())
    assert all("runbook_url:" in a and "runbook_url:" in b for a, b in changed)
    doc = yaml.safe_load(out.read_text())
    urls = {r["alert"]: r["annotations"]["runbook_url"] for g in doc["groups"] for r in g["rules"]}
    assert urls["SynthmonProbeFailing"] == "https://wiki.example.org/ops/synthmon/synthmonprobefailing"


@pytest.mark.parametrize(
    "pattern",
    ["https://wiki.example.org/synthmon", "/docs/deploy.md#runbook-{alert}", "wiki/{alert}"],
    ids=["no-placeholder", "relative", "no-scheme"],
)
def test_runbook_url_pattern_must_give_absolute_urls(pattern: str, tmp_path: Path) -> None:
    """A pattern without {alert} or without scheme and host is refused (exit 2), nothing written."""
    build = _build_module()
    out = tmp_path / "rules.yml"
    with pytest.raises(SystemExit) as exc:
        build.main(["--runbook-url-pattern", pattern, "--rules-out", str(out)])
    assert exc.value.code == 2
    assert not out.exists()


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
        "SynthmonCertificateExpiringSoon",
    } <= names
