"""Isolated children: what they inherit from the daemon, and what a crash tells the caller."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from probes_helpers import generated_key, make_ctx

from probes.base import Status
from probes.support.budget import SPENT_KEY
from probes.support.isolation import child_environment, run_isolated
from probes.support.mlflow_client import client_search_step

HERE = Path(__file__).resolve().parent
FAKE_SLACK_TOKEN = "xoxb-test-" + "0" * 24
FAKE_STORE_URL = "postgresql://synthmon:not-a-real-password@db.test/synthmon"


async def test_child_does_not_see_the_daemons_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Slack token, webhook, store URL and API key in the daemon's env are not in the child's."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", FAKE_SLACK_TOKEN)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.test/services/T0/B0/xxxx")
    monkeypatch.setenv("SYNTHMON_STORE_URL", FAKE_STORE_URL)
    monkeypatch.setenv("SYNTHMON_API_KEY", "hk_test_" + "x" * 32)
    secret_names = ("SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL", "SYNTHMON_STORE_URL", "SYNTHMON_API_KEY")
    answers = await asyncio.gather(*(run_isolated("os:getenv", name, 30) for name in secret_names))
    assert {name: a.value for name, a in zip(secret_names, answers, strict=True)} == dict.fromkeys(
        secret_names
    )
    assert (await run_isolated("os:getenv", "PATH", 30)).value == os.environ["PATH"]


async def test_caller_can_add_variables_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable the caller passes in ``env`` reaches the child, on top of the allow-list."""
    monkeypatch.setenv("SYNTHMON_NOT_INHERITED", "parent")
    answer = await run_isolated("os:getenv", "SYNTHMON_EXPLICIT", 30, env={"SYNTHMON_EXPLICIT": "yes"})
    assert answer.value == "yes"
    assert (await run_isolated("os:getenv", "SYNTHMON_NOT_INHERITED", 30)).value is None


def test_allow_list_keeps_paths_locale_python_proxies_and_ca_bundles() -> None:
    """The allow-list passes what a child needs to run and reach the platform, nothing else."""
    parent = {
        "PATH": "/usr/bin",
        "HOME": "/home/m",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": "/x",
        "HTTPS_PROXY": "http://proxy.test:3128",
        "no_proxy": "127.0.0.1",
        "REQUESTS_CA_BUNDLE": "/etc/ca.pem",
        "SSL_CERT_FILE": "/etc/ca.pem",
        "VIRTUAL_ENV": "/venv",
        "SLACK_BOT_TOKEN": FAKE_SLACK_TOKEN,
        "SYNTHMON_STORE_URL": FAKE_STORE_URL,
        "AWS_SECRET_ACCESS_KEY": "not-real",
        "MLFLOW_TRACKING_TOKEN": "hk_test_" + "y" * 32,
    }
    env = child_environment(parent, {"EXTRA": "1"})
    assert set(env) == {
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "PYTHONPATH",
        "HTTPS_PROXY",
        "no_proxy",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
        "VIRTUAL_ENV",
        "EXTRA",
    }


async def test_crashed_client_child_shows_its_stderr_tail_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client_search child that dies says why (its stderr's last lines), with the key masked."""
    # A stand-in mlflow that writes to fd 2 directly (bypassing the child's masking) and dies.
    fake = tmp_path / "mlflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\n"
        "token = os.environ['MLFLOW_TRACKING_TOKEN']\n"
        "os.write(2, f'fatal: cannot load libfoo.so; token {token}\\n'.encode())\n"
        "os._exit(3)\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    key = generated_key()
    ctx = make_ctx(None, key=key, timeout_s=30)
    async with ctx.http:
        step = await client_search_step(
            ctx, "client_search", "http://127.0.0.1:9/api/mlflow", key, timeout_s=25
        )
    assert (step.status, step.error_class) == (Status.ERROR, "subprocess_crash")
    assert "fatal: cannot load libfoo.so" in step.message
    assert key not in step.message
    assert "token ***" in step.message


async def test_child_that_answered_exits_despite_a_lingering_worker() -> None:
    """A child whose function answered exits at once, even with a blocked thread still running."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    answer = await run_isolated(
        "probes_isolation_targets:answer_and_leave_a_worker", None, 30, env={"PYTHONPATH": str(HERE)}
    )
    assert answer.value == "answered"
    assert loop.time() - start < 20  # the worker would hold interpreter shutdown for 120 s


def test_client_search_child_ends_within_what_getting_it_left(tmp_path: Path) -> None:
    """The MLflow-client child subtracts the time its parent spent getting it (a zygote starting
    under load) from its budget: a hung server reads as the child's own FAIL timeout, not a kill."""
    # A stand-in mlflow whose client never answers.
    (tmp_path / "mlflow" / "tracking").mkdir(parents=True)
    (tmp_path / "mlflow" / "__init__.py").write_text("def set_tracking_uri(uri):\n    pass\n")
    (tmp_path / "mlflow" / "tracking" / "__init__.py").write_text(
        "import time\n\n"
        "class MlflowClient:\n"
        "    def search_experiments(self, max_results):\n"
        "        time.sleep(120)\n"
    )
    payload = {
        "tracking_uri": "http://127.0.0.1:9/api/mlflow",
        "api_key": generated_key(),
        "step": "client_search",
        "request_timeout_s": 30,
        "budget_s": 10.0,
        SPENT_KEY: 7.0,
    }
    request = json.dumps(
        {"target": "probes.support.mlflow_child:search_experiments", "payload": payload, "nonce": "n"}
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "probes.support.isolation"],
        input=request,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    answers = [
        line.split(" ", 2)[2]
        for line in done.stdout.splitlines()
        if line.startswith("@@synthmon-result@@ n ")
    ]
    step = json.loads(answers[-1])
    assert (step["status"], step["error_class"]) == ("FAIL", "timeout")
    # 10 s budget, 7 s gone, half a second kept for the answer.
    assert "client_search still running after 2.5s" in step["message"]
