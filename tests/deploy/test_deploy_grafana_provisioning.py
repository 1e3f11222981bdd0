"""Grafana provisioning: the datasource and dashboard provider files, and how the ECS task mounts them.

The task's init container copies ``deploy/grafana/provisioning/`` and ``dashboards/*.json`` (synced to
S3 by the deploy pipeline) into two task volumes; Grafana starts after it succeeded and mounts them
read-only where it looks for provisioning files and where the provider points.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .dockerfile import ROOT
from .grafana import dashboard_files, load

DEPLOY = ROOT / "deploy"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
TASK = DEPLOY / "ecs-task-definition.json"
TASK_ROLE_POLICY = DEPLOY / "ecs-task-role-policy.json"
#: Grafana's default provisioning directory (GF_PATHS_PROVISIONING).
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"


@pytest.fixture(scope="module")
def containers() -> dict[str, dict[str, Any]]:
    """The task's container definitions by name."""
    task = json.loads(TASK.read_text())
    return {c["name"]: c for c in task["containerDefinitions"]}


def _yaml(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["containerPath"]: m for m in container.get("mountPoints", [])}


def test_datasource_is_the_default_prometheus_from_the_environment(
    containers: dict[str, dict[str, Any]],
) -> None:
    """One Prometheus datasource, the default, its URL from an env var the Grafana container sets."""
    doc = _yaml(PROVISIONING / "datasources" / "synthmon.yml")
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["access"] == "proxy"
    assert ds["isDefault"] is True
    match = re.fullmatch(r"\$\{(\w+)\}", ds["url"])
    assert match, ds["url"]
    env = {e["name"]: e["value"] for e in containers["grafana"]["environment"]}
    assert env[match.group(1)].startswith(("http://", "https://"))
    prometheus = _yaml(DEPLOY / "prometheus.yml")
    assert ds["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]


def test_dashboards_pick_up_the_provisioned_datasource() -> None:
    """Every dashboard's `datasource` variable lists Prometheus datasources, so the default is chosen."""
    for path in dashboard_files():
        variables = {v["name"]: v for v in load(path)["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", path.name
        assert variables["datasource"]["query"] == "prometheus", path.name


def test_provider_path_is_where_grafana_mounts_the_dashboards(containers: dict[str, dict[str, Any]]) -> None:
    """The dashboard provider reads the directory the task mounts the dashboards at, read-only."""
    doc = _yaml(PROVISIONING / "dashboards" / "synthmon.yml")
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False
    grafana = _mounts(containers["grafana"])
    assert grafana[provider["options"]["path"]]["readOnly"] is True
    assert grafana[GRAFANA_PROVISIONING]["readOnly"] is True


def test_init_container_fills_the_volumes_before_grafana_starts(
    containers: dict[str, dict[str, Any]],
) -> None:
    """grafana-config is non-essential, writes both volumes, and Grafana waits for its success."""
    init, grafana = containers["grafana-config"], containers["grafana"]
    assert init["essential"] is False  # ECS allows the SUCCESS condition on non-essential ones only
    assert {"containerName": "grafana-config", "condition": "SUCCESS"} in grafana["dependsOn"]
    task = json.loads(TASK.read_text())
    volumes = {v["name"] for v in task["volumes"]}
    written = {(m["sourceVolume"], m["containerPath"]) for m in init["mountPoints"] if not m["readOnly"]}
    read = {(m["sourceVolume"], m["containerPath"]) for m in grafana["mountPoints"]}
    assert read == written
    assert {name for name, _ in read} <= volumes
    script = " ".join(init["command"])
    for _, path in read:
        assert f" {path}/" in script, f"{path} is not filled by the init container"


def test_init_container_reads_only_what_the_task_role_allows(containers: dict[str, dict[str, Any]]) -> None:
    """The S3 prefixes the init container syncs are readable under the task role policy."""
    policy = json.loads(TASK_ROLE_POLICY.read_text())
    objects = [
        r
        for s in policy["Statement"]
        if "s3:GetObject" in s["Action"]
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    ]
    sources = re.findall(r"s3://([^/\s]+)/(\S+)", " ".join(containers["grafana-config"]["command"]))
    assert sources
    for bucket, prefix in sources:
        # Any object the sync copies lives under the prefix.
        arn = f"arn:aws:s3:::{bucket}/{prefix.rstrip('/')}/synthmon.yml"
        assert any(fnmatch.fnmatchcase(arn, resource) for resource in objects), arn


def test_repository_layout_matches_what_the_pipeline_uploads() -> None:
    """The provisioning tree holds exactly the datasource and provider files the docs tell you to upload."""
    files = sorted(p.relative_to(PROVISIONING).as_posix() for p in PROVISIONING.rglob("*") if p.is_file())
    assert files == ["dashboards/synthmon.yml", "datasources/synthmon.yml"]
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert "deploy/grafana/provisioning/" in docs
    assert "dashboards/*.json" in docs or "--include '*.json'" in docs
