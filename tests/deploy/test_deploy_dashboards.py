"""Grafana dashboard structure, and the metric contract between dashboards, rules and the daemon."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from .exposition import FakeSynthmon
from .grafana import DASHBOARD_DIR, dashboard_files, load, panels, queries

RULES = DASHBOARD_DIR / "rules" / "synthmon.rules.yml"
#: The series the deploy assignment promises dashboards for (the daemon's public metric contract).
CONTRACT = {
    "synthmon_probe_success",
    "synthmon_probe_status",
    "synthmon_probe_checks",
    "synthmon_probe_duration_seconds",
    "synthmon_step_duration_seconds",
    "synthmon_step_success",
    "synthmon_probe_runs_total",
    "synthmon_probe_last_run_timestamp_seconds",
    "synthmon_probe_consecutive_failures",
    "synthmon_http_status_code",
    "synthmon_http_phase_duration_seconds",
    "synthmon_scheduler_missed_runs_total",
    "synthmon_config_reloads_total",
    "synthmon_build_info",
    "synthmon_step_measurement",
    "synthmon_notifications_total",
    "synthmon_tls_cert_expiry_timestamp_seconds",
    "synthmon_latency_baseline_seconds",
    "synthmon_latency_regression",
}
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
_METRIC = re.compile(r"\bsynthmon_[a-z0-9_]+")


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("synthmon_dashboard_build", DASHBOARD_DIR / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve annotations through sys.modules: register before executing.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _datasource_refs(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every ``datasource`` value anywhere in a dashboard, with where it was found."""
    out: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                out.append((f"{path}.{key}", value))
            out.extend(_datasource_refs(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_datasource_refs(value, f"{path}[{i}]"))
    return out


def _exported_names() -> set[str]:
    """Series names the daemon's metric classes export (``_total``, ``_bucket`` ... included)."""
    fake = FakeSynthmon()
    for _ in range(4):  # the fourth run brings the occasional store/sink/job errors
        fake.tick()
    return {sample.name for family in fake.registry.collect() for sample in family.samples}


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    """Every dashboard, by file name."""
    return {path.name: load(path) for path in dashboard_files()}


def test_committed_dashboards_match_the_generator() -> None:
    """The JSON files are exactly what dashboards/build.py produces (run it after editing)."""
    build = _build_module()
    assert set(build.DASHBOARDS) == {p.name for p in dashboard_files()}
    for name in build.DASHBOARDS:
        assert (DASHBOARD_DIR / name).read_text() == build.render(name), f"{name}: run dashboards/build.py"


def test_dashboards_have_unique_uids_titles_and_a_recent_schema(docs: dict[str, dict[str, Any]]) -> None:
    """Each dashboard has its own uid and title and a schemaVersion of Grafana 10 or later."""
    uids = [str(d.get("uid") or "") for d in docs.values()]
    assert all(uids), uids
    assert len(set(uids)) == len(uids), uids
    assert all(len(uid) <= 40 for uid in uids)  # Grafana's limit
    titles = [d["title"] for d in docs.values()]
    assert len(set(titles)) == len(titles)
    for name, doc in docs.items():
        assert doc["schemaVersion"] >= 36, name
        assert "id" not in doc or doc["id"] is None, f"{name}: an instance-specific id would break import"


def test_panel_ids_are_unique_and_panels_fit_the_grid(docs: dict[str, dict[str, Any]]) -> None:
    """Panel ids are unique per dashboard and every panel lies within Grafana's 24 columns."""
    for name, doc in docs.items():
        ids = [p["id"] for p in panels(doc)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for p in panels(doc):
            grid = p["gridPos"]
            assert grid["x"] >= 0, (name, p["title"])
            assert 0 < grid["w"] <= 24 - grid["x"], (name, p["title"])


def test_no_datasource_uid_is_hard_coded(docs: dict[str, dict[str, Any]]) -> None:
    """Panels, targets and variables all use the ${datasource} variable, a Prometheus data source."""
    for name, doc in docs.items():
        variables = {v["name"]: v for v in doc["templating"]["list"]}
        ds = variables.get("datasource")
        assert ds is not None, name
        assert (ds["type"], ds["query"]) == ("datasource", "prometheus"), name
        refs = _datasource_refs(doc["panels"]) + _datasource_refs(doc["templating"]["list"])
        assert refs, name
        for where, ref in refs:
            assert ref == {"type": "prometheus", "uid": "${datasource}"}, f"{name}{where}: {ref}"


def test_every_query_filters_on_job_environment_and_instance(docs: dict[str, dict[str, Any]]) -> None:
    """Each selector carries the job/environment/instance variables, so one dashboard serves all envs."""
    for q in queries():
        selectors = _SELECTOR.findall(q.expr)
        assert selectors, q.id
        for metric, matchers in selectors:
            for var in ("job", "environment", "instance"):
                assert f'{var}=~"${var}"' in matchers, f"{q.id}: {metric} lacks {var}"


def test_every_variable_used_is_defined(docs: dict[str, dict[str, Any]]) -> None:
    """A query never references a template variable its dashboard does not define."""
    builtins = {"__rate_interval", "__range", "__interval"}
    for name, doc in docs.items():
        defined = {v["name"] for v in doc["templating"]["list"]} | builtins
        text = " ".join(t["expr"] for p in panels(doc) for t in p.get("targets", []))
        text += " ".join(p["title"] for p in panels(doc))
        used = set(re.findall(r"\$\{?(\w+)", text))
        assert used <= defined, f"{name}: undefined {used - defined}"


def test_overview_repeats_a_row_per_probe_and_drilldown_picks_one(docs: dict[str, dict[str, Any]]) -> None:
    """The overview repeats its probe row over $probe; the drill-down's $probe is a single choice."""
    overview = docs["synthmon-overview.json"]
    rows = [p for p in overview["panels"] if p["type"] == "row"]
    assert any(r.get("repeat") == "probe" for r in rows)
    drill = {v["name"]: v for v in docs["synthmon-probe.json"]["templating"]["list"]}
    assert drill["probe"]["multi"] is False
    assert drill["probe"]["includeAll"] is False
    assert "step" in drill


def test_dashboards_cover_every_series_of_the_metric_contract() -> None:
    """Every series of the metric contract appears in at least one panel."""
    used = {m for q in queries() for m in _METRIC.findall(q.expr)}
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    assert used >= CONTRACT, f"not on any dashboard: {sorted(CONTRACT - used)}"


def test_dashboards_and_rules_only_use_series_the_daemon_exports() -> None:
    """Each synthmon_* name in a panel or an alert rule is exported by the daemon's metric classes."""
    exported = _exported_names()
    exprs = [q.expr for q in queries()]
    doc = yaml.safe_load(RULES.read_text())
    exprs += [rule["expr"] for group in doc["groups"] for rule in group["rules"]]
    used = {m for expr in exprs for m in _METRIC.findall(expr)}
    assert used, "no synthmon series found"
    assert used <= exported, f"not exported by the daemon: {sorted(used - exported)}"
    assert {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported} >= CONTRACT


def test_generator_check_mode_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`build.py --check` exits 1 when a file differs and leaves it alone; without it, rewrites it."""
    build = _build_module()
    for name in build.DASHBOARDS:
        (tmp_path / name).write_text(build.render(name))
    (tmp_path / "rules").mkdir()
    (tmp_path / build.RULES).write_text(RULES.read_text())
    stale = next(iter(build.DASHBOARDS))
    (tmp_path / stale).write_text("{}")
    monkeypatch.setattr(build, "HERE", tmp_path)
    assert build.main(["--check"]) == 1
    assert (tmp_path / stale).read_text() == "{}"
    assert build.main([]) == 0
    assert build.main(["--check"]) == 0
