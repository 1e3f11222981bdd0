"""Sandbox start-up and shutdown as processes: start failures, ``sandbox up`` and its commands, no orphans.

These tests start their own sandboxes (not the session one), so they cost an MLflow start each.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from sandbox import Sandbox, SandboxStartError
from sandbox.control import STATE_FILE

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 180.0


def wait_for(condition: Callable[[], bool], deadline_s: float, what: str) -> None:
    """Poll ``condition`` until it holds, failing with ``what`` at the deadline."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (a zombie waiting for init to reap it counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def sandbox_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sandbox ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A loopback port that is taken (listening) for the duration of the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_start_failure_names_the_component_and_shows_its_log(tmp_path: Path) -> None:
    """An MLflow that cannot start fails start() naming 'mlflow' with its log tail, and leaves no process."""
    fake = tmp_path / "fake-mlflow"
    fake.write_text("#!/bin/sh\necho 'fake mlflow: cannot open database, giving up' >&2\nexit 3\n")
    fake.chmod(0o755)
    # The session's shared sandbox (started by earlier tests) has a platform process of its own.
    before = _platform_pids()
    box = Sandbox(tmp_path / "work", auth_port=0, registry_port=0, mlflow_executable=str(fake))
    with pytest.raises(SandboxStartError, match="cannot open database") as caught:
        box.start(timeout_s=60)
    assert caught.value.component == "mlflow"
    assert "exited with code 3" in str(caught.value)
    assert box.pids == {}
    assert _platform_pids() - before == set()


def _platform_pids() -> set[int]:
    """Pids of this process's descendants that run the sandbox platform."""
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if "sandbox.platform" in " ".join(p.cmdline())
    }


def test_up_serves_commands_and_leaves_no_child_after_ctrl_c(tmp_path: Path, occupied_port: int) -> None:
    """`sandbox up` falls back from a taken port, writes the env file, obeys fault/clear/status, and
    stops every child process (checked by pid) on SIGINT."""
    workdir, env_file = tmp_path / "work", tmp_path / "monitor.env"
    argv = ["up", "--workdir", str(workdir), "--env-file", str(env_file), "--auth-port", str(occupied_port)]
    up = subprocess.Popen(
        [sys.executable, "-m", "sandbox", *argv, "--registry-port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: (workdir / STATE_FILE).exists() or up.poll() is not None, START_DEADLINE_S, "sandbox up"
        )
        assert up.poll() is None, "sandbox up exited early"
        wait_for(env_file.exists, 10, "the env file")
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert env["SYNTHMON_API_KEY"].startswith("hk_test_")
        assert not env["AUTH_URL"].endswith(f":{occupied_port}")
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"

        status = sandbox_cli("status", "--workdir", str(workdir))
        assert status.returncode == 0
        assert "faults    none" in status.stdout
        assert sandbox_cli("fault", "mlflow-down", "--workdir", str(workdir)).returncode == 0
        search = env["REGISTRY_URL"] + "/api/mlflow/api/2.0/mlflow/experiments/search?max_results=1"
        headers = {"Authorization": f"Bearer {env['SYNTHMON_API_KEY']}"}
        assert httpx.get(search, headers=headers, trust_env=False).status_code == 502
        assert sandbox_cli("fault", "no-such-fault", "--workdir", str(workdir)).returncode == 2
        assert sandbox_cli("clear", "--workdir", str(workdir)).returncode == 0
        assert httpx.get(search, headers=headers, trust_env=False).status_code == 200

        children = [p.pid for p in psutil.Process(up.pid).children(recursive=True)]
        assert len(children) >= 3, "expected mlflow, its uvicorn and the platform process"
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    assert up.returncode == 0
    wait_for(lambda: all(gone(pid) for pid in children), 30, "every child of sandbox up to exit")
    assert env["SYNTHMON_API_KEY"] not in output, "the full key was printed"
    assert not (workdir / STATE_FILE).exists()
    assert sandbox_cli("status", "--workdir", str(workdir)).returncode == 1


_OWNER = """
import sys, time
from pathlib import Path
from sandbox import Sandbox
box = Sandbox(Path(sys.argv[1]), auth_port=0, registry_port=0).start(timeout_s=float(sys.argv[2]))
print("ready", flush=True)
time.sleep(600)
"""


def test_owner_killed_with_sigkill_leaves_no_orphans(tmp_path: Path) -> None:
    """When the owning process dies without stop() (SIGKILL), the platform and MLflow exit too."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(tmp_path / "work"), str(START_DEADLINE_S)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "ready"
        children = [p.pid for p in psutil.Process(owner.pid).children(recursive=True)]
        assert len(children) >= 3
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    wait_for(lambda: all(gone(pid) for pid in children), 30, "the orphaned sandbox processes to exit")
