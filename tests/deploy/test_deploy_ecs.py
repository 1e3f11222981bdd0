"""The ECS task definition, its IAM policy, the env file example and the Prometheus scrape example."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.daemon import DEFAULT_GRACE_S

from .dockerfile import ROOT, env_of, instructions

DEPLOY = ROOT / "deploy"
TASK = DEPLOY / "ecs-task-definition.json"
POLICY = DEPLOY / "ecs-execution-role-policy.json"
ENV_EXAMPLE = DEPLOY / "synthmon.env.example"
PROM_CONFIG = DEPLOY / "prometheus.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
#: The environment interface of DESIGN.md ("Environment read by the default config.yaml").
ENV_INTERFACE = {
    "SYNTHMON_ENV",
    "SYNTHMON_LISTEN",
    "SYNTHMON_STORE_URL",
    "AUTH_URL",
    "REGISTRY_URL",
    "SYNTHMON_API_KEY",
    "SLACK_WEBHOOK_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_CHANNEL",
    "SLACK_API_URL",
}
SECRETS = {"SYNTHMON_API_KEY", "SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL"}
_SECRET_ARN = re.compile(
    r"arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+(:[\w-]*:[\w-]*:[\w-]*)?"
)
_SSM_ARN = re.compile(r"arn:aws:ssm:[a-z0-9-]+:\d{12}:parameter/[\w/.-]+")
#: Fargate's valid task sizes: cpu units -> allowed memory (MiB).
FARGATE_MEMORY = {
    256: {512, 1024, 2048},
    512: set(range(1024, 4097, 1024)),
    1024: set(range(2048, 8193, 1024)),
    2048: set(range(4096, 16385, 1024)),
    4096: set(range(8192, 30721, 1024)),
}


@pytest.fixture(scope="module")
def task() -> dict[str, Any]:
    """The task definition document."""
    doc: dict[str, Any] = json.loads(TASK.read_text())
    return doc


@pytest.fixture(scope="module")
def synthmon(task: dict[str, Any]) -> dict[str, Any]:
    """The synthmon container definition."""
    (container,) = [c for c in task["containerDefinitions"] if c["name"] == "synthmon"]
    assert isinstance(container, dict)
    return container


def _env_file(path: Path) -> dict[str, str]:
    """A docker --env-file: KEY=VALUE lines, # comments."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out


def test_task_is_a_valid_fargate_size_with_room_for_every_container(task: dict[str, Any]) -> None:
    """Task cpu/memory are a valid Fargate pair and the containers' limits fit inside them."""
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["networkMode"] == "awsvpc"
    cpu, memory = int(task["cpu"]), int(task["memory"])
    assert memory in FARGATE_MEMORY[cpu]
    containers = task["containerDefinitions"]
    assert sum(c.get("cpu", 0) for c in containers) <= cpu
    assert sum(c.get("memory", c.get("memoryReservation", 0)) for c in containers) <= memory
    names = [c["name"] for c in containers]
    assert len(names) == len(set(names))


def test_synthmon_is_a_non_essential_sidecar_that_restarts_in_place(
    task: dict[str, Any], synthmon: dict[str, Any]
) -> None:
    """synthmon is essential=false beside an essential main container, with a restart policy."""
    assert synthmon["essential"] is False
    assert any(c["essential"] for c in task["containerDefinitions"] if c["name"] != "synthmon")
    policy = synthmon["restartPolicy"]
    assert policy["enabled"] is True
    assert policy["ignoredExitCodes"] == [0]  # a clean SIGTERM drain is a stop, not a crash
    assert 60 <= policy["restartAttemptPeriod"] <= 1800
    assert synthmon["linuxParameters"]["initProcessEnabled"] is True  # reaps probe subprocesses


def test_health_check_is_the_images_and_within_ecs_limits(synthmon: dict[str, Any]) -> None:
    """The ECS healthCheck runs the Dockerfile's HEALTHCHECK command on /healthz, with valid timings."""
    (docker_check,) = [i for i in instructions() if i.keyword == "HEALTHCHECK"]
    hc = synthmon["healthCheck"]
    assert hc["command"] == ["CMD", *(docker_check.exec_form() or [])]
    assert "/healthz" in hc["command"][-1]
    assert 5 <= hc["interval"] <= 300
    assert 2 <= hc["timeout"] <= 60
    assert hc["timeout"] < hc["interval"]
    assert 1 <= hc["retries"] <= 10
    assert 0 <= hc["startPeriod"] <= 300


def test_stop_timeout_outlasts_the_daemons_drain(synthmon: dict[str, Any]) -> None:
    """stopTimeout is 30 s: longer than the daemon's SIGTERM grace, within Fargate's 120 s."""
    assert synthmon["stopTimeout"] == 30
    assert synthmon["stopTimeout"] > DEFAULT_GRACE_S


def test_secrets_come_from_secrets_manager_or_ssm_never_from_plain_environment(
    synthmon: dict[str, Any],
) -> None:
    """API key and Slack credentials are `secrets` (ARNs); no plain env var carries a secret."""
    secrets = {s["name"]: s["valueFrom"] for s in synthmon["secrets"]}
    assert secrets.keys() >= SECRETS | {"SLACK_CHANNEL"}
    for name, arn in secrets.items():
        assert _SECRET_ARN.fullmatch(arn) or _SSM_ARN.fullmatch(arn), f"{name}: {arn}"
    for name in SECRETS:
        assert secrets[name].startswith("arn:aws:secretsmanager:"), name
    plain = {e["name"]: e["value"] for e in synthmon["environment"]}
    assert not plain.keys() & secrets.keys()
    assert not [n for n in plain if re.search(r"KEY|TOKEN|WEBHOOK|PASSWORD|SECRET", n)]
    for value in plain.values():
        assert not re.search(r"hk_(live|test|dev)_|xox[bp]-|hooks\.slack\.com", value)
    assert (plain.keys() | secrets.keys()) <= ENV_INTERFACE


def test_execution_role_policy_can_read_every_secret_and_write_the_logs(task: dict[str, Any]) -> None:
    """The example IAM policy grants exactly the secrets, parameters and log group the task uses."""
    statements = json.loads(POLICY.read_text())["Statement"]

    def allowed(action: str, resource: str) -> bool:
        return any(
            action in s["Action"] and any(fnmatch.fnmatchcase(resource, r) for r in s["Resource"])
            for s in statements
            if s["Effect"] == "Allow"
        )

    for container in task["containerDefinitions"]:
        for secret in container.get("secrets", []):
            arn = secret["valueFrom"]
            if arn.startswith("arn:aws:secretsmanager:"):
                base = ":".join(arn.split(":")[:7])  # drop :json-key:version-stage:version-id
                assert allowed("secretsmanager:GetSecretValue", base), arn
            else:
                assert allowed("ssm:GetParameters", arn), arn
        options = container["logConfiguration"]["options"]
        group = options["awslogs-group"]
        account = task["executionRoleArn"].split(":")[4]
        log_arn = f"arn:aws:logs:{options['awslogs-region']}:{account}:log-group:{group}:log-stream:x"
        assert allowed("logs:PutLogEvents", log_arn), group
        if options.get("awslogs-create-group") == "true":
            assert allowed("logs:CreateLogGroup", log_arn), group


def test_container_matches_the_image(synthmon: dict[str, Any]) -> None:
    """User, port, command and the writable volume agree with the Dockerfile."""
    instrs = instructions()
    runtime = [i for i in instrs if i.stage == instrs[-1].stage]
    (user,) = [i.args for i in runtime if i.keyword == "USER"]
    assert synthmon["user"] == user
    (expose,) = [i.args for i in runtime if i.keyword == "EXPOSE"]
    assert [p["containerPort"] for p in synthmon["portMappings"]] == [int(expose)]
    (cmd,) = [i for i in runtime if i.keyword == "CMD"]
    assert synthmon["command"] == cmd.exec_form()
    # Read-only root: the one writable place (store and TMPDIR) must be a mounted volume.
    assert synthmon["readonlyRootFilesystem"] is True
    env = env_of(runtime)
    assert env["TMPDIR"].startswith("/var/lib/synthmon/")
    mounts = {m["containerPath"]: m for m in synthmon["mountPoints"]}
    assert mounts["/var/lib/synthmon"]["readOnly"] is False
    (volume,) = [i.args for i in runtime if i.keyword == "VOLUME"]
    assert json.loads(volume) == ["/var/lib/synthmon"]


def test_logs_go_to_cloudwatch_without_blocking_the_daemon(task: dict[str, Any]) -> None:
    """Every container logs through awslogs in non-blocking mode with group, region and prefix."""
    for container in task["containerDefinitions"]:
        log = container["logConfiguration"]
        assert log["logDriver"] == "awslogs"
        options = log["options"]
        assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= options.keys()
        assert options["mode"] == "non-blocking"


def test_env_example_lists_the_whole_environment_interface_without_secret_values() -> None:
    """deploy/synthmon.env.example has every documented variable and leaves the secrets empty."""
    env = _env_file(ENV_EXAMPLE)
    assert set(env) == ENV_INTERFACE
    for name in SECRETS:
        assert env[name] == "", name
    instrs = instructions()
    image_env = env_of([i for i in instrs if i.stage == instrs[-1].stage])
    assert env["SYNTHMON_STORE_URL"] == image_env["SYNTHMON_STORE_URL"]
    assert env["SYNTHMON_LISTEN"] == image_env["SYNTHMON_LISTEN"]


@pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool not installed")
def test_prometheus_example_config_is_valid_and_loads_the_rules() -> None:
    """`promtool check config deploy/prometheus.yml` passes, including the rule file it loads."""
    proc = subprocess.run(
        [PROMTOOL, "check", "config", str(PROM_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 rule files found" in proc.stdout  # synthmon.rules.yml and synthmon-slo.rules.yml


def test_prometheus_example_scrapes_job_synthmon_and_labels_the_environment() -> None:
    """The scrape job is `synthmon` on :9710 and its relabeling turns the DNS name into `environment`."""
    config = yaml.safe_load(PROM_CONFIG.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "synthmon"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["port"] == 9710
    (relabel,) = [r for r in job["relabel_configs"] if r["target_label"] == "environment"]
    # Prometheus anchors relabel regexes at both ends; $1 is Go's spelling of \1.
    for name in sd["names"]:
        match = re.fullmatch(relabel["regex"], name)
        assert match, name
        env = relabel["replacement"].replace("$1", match.group(1))
        assert env in {"production", "staging"}
        assert env in name


def test_default_config_validates_with_the_task_definition_environment(
    synthmon: dict[str, Any], tmp_path: Path
) -> None:
    """`synthmon check-config` accepts the image's config.yaml with the task's env and fake secrets."""
    config = ROOT / "config.yaml"
    if not config.exists():
        pytest.fail("config.yaml (the image's default config, COPY'd by the Dockerfile) does not exist")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SYNTHMON_", "SLACK_", "AUTH_", "REGISTRY_"))
    }
    env |= {e["name"]: e["value"] for e in synthmon["environment"]}
    fakes = {
        "SYNTHMON_API_KEY": "hk_test_" + "x" * 32,
        "SLACK_BOT_TOKEN": "xoxb" + "-test-not-a-token",  # split: no token-shaped literal in the tree
        "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/webhook",
        "SLACK_CHANNEL": "#synthmon-test",
        "SYNTHMON_STORE_URL": f"sqlite:///{tmp_path}/synthmon.db",
    }
    env |= {s["name"]: fakes[s["name"]] for s in synthmon["secrets"]}
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", "--config", str(config)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert fakes["SYNTHMON_API_KEY"] not in proc.stdout + proc.stderr


def test_env_example_mentions_every_variable_the_default_config_reads() -> None:
    """Each ${VAR} of config.yaml is listed in the env example (set, or commented with its default)."""
    lines = [ln for ln in (ROOT / "config.yaml").read_text().splitlines() if not ln.lstrip().startswith("#")]
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", "\n".join(lines)))
    assert used, "config.yaml reads no environment variables?"
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    assert used <= listed, f"not in deploy/synthmon.env.example: {sorted(used - listed)}"
