"""The container's runtime contract, checked on the real daemon without Docker.

The daemon runs exactly as the image starts it -- the image's CMD, the repository's config.yaml,
the ECS task definition's environment, the Dockerfile's store and listen variables -- with the
platform URLs pointed at a closed loopback port (every probe fails fast; no platform needed). Then:
the image's HEALTHCHECK command reports healthy, /metrics carries what Prometheus' `up`-style
alerts need, and SIGTERM ends the process with exit 0 inside the task's stopTimeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .dockerfile import ROOT, env_of, instructions

TASK = ROOT / "deploy" / "ecs-task-definition.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback http only
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_daemon_as_the_image_runs_it_is_healthy_and_stops_within_stop_timeout(tmp_path: Path) -> None:
    """Image CMD + config.yaml + task env: HEALTHCHECK passes, metrics serve, SIGTERM exits 0 in time."""
    instrs = instructions()
    runtime = [i for i in instrs if i.stage == instrs[-1].stage]
    (cmd,) = [i.exec_form() for i in runtime if i.keyword == "CMD"]
    (check,) = [i.exec_form() for i in runtime if i.keyword == "HEALTHCHECK"]
    assert cmd is not None
    assert check is not None
    task = json.loads(TASK.read_text())
    (container,) = [c for c in task["containerDefinitions"] if c["name"] == "synthmon"]

    port, closed = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNTHMON_", "SLACK_"))}
    env |= env_of(runtime)
    env |= {e["name"]: e["value"] for e in container["environment"]}
    env |= {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "SYNTHMON_LISTEN": f"127.0.0.1:{port}",
        "SYNTHMON_STORE_URL": f"sqlite:///{tmp_path}/synthmon.db",
        "SYNTHMON_API_KEY": "hk_test_" + "x" * 32,
        # Nothing listens here: every probe fails fast, which is all this test needs.
        "AUTH_URL": f"http://127.0.0.1:{closed}",
        "REGISTRY_URL": f"http://127.0.0.1:{closed}",
    }
    # The image's CMD names /etc/synthmon/config.yaml, which is the repository's config.yaml.
    argv = [a if a != "/etc/synthmon/config.yaml" else str(ROOT / "config.yaml") for a in cmd]
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", *argv],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None:
            health_env = {**env, "SYNTHMON_LISTEN": f"0.0.0.0:{port}"}
            argv_check = [sys.executable if a == "python" else a for a in check]
            if (
                subprocess.run(
                    argv_check, env=health_env, capture_output=True, timeout=10, check=False
                ).returncode
                == 0
            ):
                healthy = True
                break
            time.sleep(0.2)
        assert healthy, f"HEALTHCHECK never passed (exit {proc.poll()}):\n{log.read_text()[-4000:]}"

        status, text = _get(base + "/metrics")
        assert status == 200
        assert "synthmon_build_info{" in text
        # Every series carries the daemon's location (the default one here: nothing set it).
        assert 'synthmon_probe_runs_total{location="default",probe="registration",status="FAIL"}' in text
        # No prometheus_client creation-time series from any collector of the daemon.
        assert "_created" not in text

        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(timeout=container["stopTimeout"])
        took = time.monotonic() - started
        assert code == 0, log.read_text()[-4000:]
        assert took < container["stopTimeout"]
        assert env["SYNTHMON_API_KEY"] not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
