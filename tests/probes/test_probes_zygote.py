"""Isolated children forked from a zygote: the same guarantees as a fresh interpreter, and any zygote
trouble costs a fresh interpreter, never a run. Real processes throughout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client import CollectorRegistry

from monitor.daemon import Daemon
from probes.base import Status, SystemClock
from probes.registry import PROBE_KINDS
from probes.support.isolation import IsolationCrash, IsolationTimeout, run_isolated
from probes.support.zygote import Zygote
from tests.core.conftest import REPO, Captured, config_from
from tests.core.kinds import IsolatedEchoProbe

HERE = Path(__file__).resolve().parent
TARGETS = "probes_isolation_targets"
SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-test-" + "1" * 24,
    "SYNTHMON_STORE_URL": "postgresql://synthmon:zygote-test-password@db.test/synthmon",
}


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.02)


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test targets importable by the zygote (which inherits the allow-listed PYTHONPATH)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))


@pytest.fixture
async def zygote(on_path: None, captured: Captured) -> AsyncIterator[Zygote]:
    """A zygote that preloads only the test targets (cheap to start), stopped after the test."""
    z = Zygote(logger=captured.logger, preload=(TARGETS,))
    yield z
    await z.close()


async def test_child_is_forked_into_its_own_session(zygote: Zygote) -> None:
    """The child is the zygote's, leads its own session and group, and the zygote serves again."""
    first = await run_isolated(f"{TARGETS}:whoami", None, 30, zygote=zygote)
    second = await run_isolated(f"{TARGETS}:whoami", None, 30, zygote=zygote)
    assert zygote.pid is not None
    for answer in (first, second):
        assert answer.value["ppid"] == zygote.pid
        assert answer.value["sid"] == answer.value["pgid"] == answer.value["pid"] == answer.pid
    assert first.pid != second.pid


async def test_secrets_reach_neither_the_zygote_nor_the_child(
    zygote: Zygote, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Daemon secrets stay out of both environments; the caller's explicit variables get in."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    answer = await run_isolated(
        f"{TARGETS}:whoami", None, 30, env={"SYNTHMON_EXPLICIT": "yes"}, zygote=zygote
    )
    assert answer.value["ppid"] == zygote.pid
    assert answer.value["env"]["SYNTHMON_EXPLICIT"] == "yes"
    assert not set(SECRETS) & set(answer.value["env"])
    assert zygote.pid is not None
    zygote_env = Path(f"/proc/{zygote.pid}/environ").read_bytes()  # noqa: ASYNC240 - procfs, instant
    for value in SECRETS.values():
        assert value.encode() not in zygote_env
        assert value not in json.dumps(answer.value)


async def test_deadline_kills_the_whole_group(zygote: Zygote, tmp_path: Path) -> None:
    """A child stuck past its deadline is killed with its grandchild; the zygote lives on."""
    pid_file = tmp_path / "pids"
    with pytest.raises(IsolationTimeout):
        await run_isolated(f"{TARGETS}:hang_with_helper", {"pid_file": str(pid_file)}, 3, zygote=zygote)
    child, grandchild = (int(p) for p in pid_file.read_text().split())
    await _until(lambda: _gone(child) and _gone(grandchild))
    assert zygote.pid is not None
    assert not _gone(zygote.pid)


async def test_crash_reports_exit_code_and_stderr_tail(zygote: Zygote) -> None:
    """A child that dies without answering is an IsolationCrash with its exit code and stderr."""
    with pytest.raises(IsolationCrash) as caught:
        await run_isolated(f"{TARGETS}:crash", None, 30, zygote=zygote)
    assert "exited with code 7" in str(caught.value)
    assert "fatal: the client library gave up" in caught.value.stderr_tail


async def test_cancelling_the_run_kills_the_child(zygote: Zygote, tmp_path: Path) -> None:
    """Cancelling the awaiting task kills the forked child (and its grandchild)."""
    pid_file = tmp_path / "pids"
    task = asyncio.ensure_future(
        run_isolated(f"{TARGETS}:hang_with_helper", {"pid_file": str(pid_file)}, 60, zygote=zygote)
    )
    await _until(lambda: pid_file.exists() and len(pid_file.read_text().split()) == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    child, grandchild = (int(p) for p in pid_file.read_text().split())
    await _until(lambda: _gone(child) and _gone(grandchild))


@pytest.mark.parametrize("forked", [True, False], ids=["zygote", "fresh-interpreter"])
async def test_output_on_fd1_cannot_forge_the_answer(zygote: Zygote, forked: bool) -> None:
    """Marker lines without the run's nonce are ignored, and a partial line does not hide the answer."""
    via = zygote if forked else None
    answer = await run_isolated(f"{TARGETS}:forge_then_answer", None, 30, zygote=via)
    assert answer.value == "real"
    with pytest.raises(IsolationCrash):
        await run_isolated(f"{TARGETS}:forge_then_die", None, 30, zygote=via)


async def test_zygote_with_threads_refuses_and_runs_use_fresh_interpreters(
    on_path: None, captured: Captured
) -> None:
    """Imports that start a thread make the zygote refuse; runs go on in fresh interpreters, logged once."""
    zygote = Zygote(logger=captured.logger, preload=(TARGETS, "probes_threaded_import"))
    try:
        for _ in range(2):
            answer = await run_isolated(f"{TARGETS}:whoami", None, 30, zygote=zygote)
            assert answer.value["ppid"] == os.getpid()
        assert zygote.pid is None
    finally:
        await zygote.close()
    assert "started-at-import" in captured.text
    assert captured.text.count("isolation.zygote_unavailable") == 1


async def test_killed_zygote_is_replaced_at_the_next_run(zygote: Zygote, tmp_path: Path) -> None:
    """SIGKILL of the zygote mid-run: that child still answers, the next run gets a new zygote."""
    pid_file, go_file = tmp_path / "pid", tmp_path / "go"
    payload = {"pid_file": str(pid_file), "go_file": str(go_file)}
    task = asyncio.ensure_future(run_isolated(f"{TARGETS}:answer_when_told", payload, 60, zygote=zygote))
    await _until(pid_file.exists)
    old = zygote.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    await _until(lambda: _gone(old))
    go_file.touch()
    assert (await task).value == "answered late"
    answer = await run_isolated(f"{TARGETS}:whoami", None, 30, zygote=zygote)
    assert zygote.pid not in (None, old)
    assert answer.value["ppid"] == zygote.pid


async def test_hung_zygote_is_killed_and_the_run_uses_a_fresh_interpreter(
    on_path: None, captured: Captured
) -> None:
    """A zygote that stops answering costs that run a fresh interpreter, not the run."""
    zygote = Zygote(logger=captured.logger, preload=(TARGETS,), fork_timeout_s=1.0)
    try:
        await run_isolated(f"{TARGETS}:whoami", None, 30, zygote=zygote)
        hung = zygote.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)
        answer = await run_isolated(f"{TARGETS}:whoami", None, 30, zygote=zygote)
        assert answer.value["ppid"] == os.getpid()
        await _until(lambda: _gone(hung))
    finally:
        await zygote.close()
    assert "isolation.zygote_hung" in captured.text


async def test_zygote_is_recycled_after_max_forks(on_path: None, captured: Captured) -> None:
    """After its quota of children a zygote is replaced, and the old one exits."""
    zygote = Zygote(logger=captured.logger, preload=(TARGETS,), max_forks=2)
    try:
        parents = [
            (await run_isolated(f"{TARGETS}:whoami", None, 30, zygote=zygote)).value["ppid"] for _ in range(3)
        ]
        assert parents[0] == parents[1] != parents[2]
        await _until(lambda: _gone(parents[0]))
    finally:
        await zygote.close()


async def test_differing_interpreter_settings_use_a_fresh_interpreter(zygote: Zygote, tmp_path: Path) -> None:
    """A run whose PYTHON* variables differ from the zygote's gets a fresh interpreter (a fork cannot
    apply them)."""
    await run_isolated(f"{TARGETS}:whoami", None, 30, zygote=zygote)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ["PYTHONPATH"]])}
    answer = await run_isolated(f"{TARGETS}:whoami", None, 30, env=env, zygote=zygote)
    assert answer.value["ppid"] == os.getpid()


async def test_close_stops_the_zygote(zygote: Zygote) -> None:
    """close() leaves no zygote process behind; the next run starts a new one."""
    await run_isolated(f"{TARGETS}:whoami", None, 30, zygote=zygote)
    old = zygote.pid
    assert old is not None
    await zygote.close()
    assert zygote.pid is None
    assert _gone(old)
    answer = await run_isolated(f"{TARGETS}:whoami", None, 30, zygote=zygote)
    assert answer.value["ppid"] not in (old, os.getpid())


async def test_run_once_stops_the_zygote_it_started(
    on_path: None, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Daemon.run_once (``synthmon once``): an isolated kind runs forked, and no zygote outlives the call."""
    monkeypatch.setitem(PROBE_KINDS, "t_iso_echo", IsolatedEchoProbe)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ["PYTHONPATH"]]))
    config = config_from(
        "environment: test\nsecrets:\n  api_key: ${KEY}\n"
        "probes:\n  - {name: p, kind: t_iso_echo, timeout: 30s}\n"
    )
    zygote = Zygote(logger=captured.logger, preload=(TARGETS,))
    daemon = Daemon(
        config, registry=CollectorRegistry(), clock=SystemClock(), logger=captured.logger, zygote=zygote
    )
    [result] = await daemon.run_once()
    assert result.steps[0].status is Status.FAIL  # what the echo kind reports: it ran
    started = [json.loads(line) for line in captured.text.splitlines() if "isolation.zygote_started" in line]
    assert len(started) == 1
    assert zygote.pid is None
    assert _gone(int(started[0]["pid"]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_daemon_forks_the_mlflow_client_check_and_stops_its_zygote(tmp_path: Path) -> None:
    """`synthmon run`: the MLflow client check runs in a child of the zygote; SIGTERM leaves no zygote."""
    port = _free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"environment: zygote\nlisten: 127.0.0.1:{port}\nstore: {{url: 'sqlite:///{tmp_path / 's.db'}'}}\n"
        "secrets: {api_key: hk_test_" + "z" * 32 + "}\n"
        "probes:\n  - name: alb\n    kind: alb_health\n    interval: 1m\n    timeout: 40s\n"
        "    options: {registry_url: 'http://127.0.0.1:9', client_timeout_s: 30s,"
        " checks: [{name: mlflow_client, kind: mlflow_client, path: /api/mlflow}]}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), **SECRETS}
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config), "--log-format", "json"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while '"probe.finished"' not in (tmp_path / "daemon.log").read_text():
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
            assert time.monotonic() < deadline, "no probe run within 120 s"
            time.sleep(0.05)
        events = [
            json.loads(line)
            for line in (tmp_path / "daemon.log").read_text().splitlines()
            if line.startswith("{")
        ]
        started = [e for e in events if e["event"] == "isolation.zygote_started"]
        assert started, [e["event"] for e in events]
        zygote = int(started[0]["pid"])
        assert psutil.Process(zygote).ppid() == proc.pid
        assert not any(v.encode() in Path(f"/proc/{zygote}/environ").read_bytes() for v in SECRETS.values())
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert _gone(zygote)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    finished = [e for e in events if e["event"] == "probe.finished"]
    # The client ran in the child and failed on the closed port: a FAIL, not a lost run.
    assert (finished[0]["failing_step"], finished[0]["status"]) == ("mlflow_client", "FAIL")


async def test_a_child_learns_the_time_its_zygote_took_to_start(on_path: None, captured: Captured) -> None:
    """Waiting for a slow zygote uses the run's deadline: the child's payload says how much, so a
    child with its own budget (probes.support.child) ends it before the parent's kill."""
    zygote = Zygote(logger=captured.logger, preload=(TARGETS, "probes_slow_import"))
    try:
        answer = await run_isolated(f"{TARGETS}:echo", {"timeout": 20.0}, 30, zygote=zygote)
        assert answer.value["timeout"] == 20.0
        assert 1.5 <= answer.value["isolation_spent_s"] < 15.0  # the import's sleep, at most half the budget
        again = await run_isolated(f"{TARGETS}:echo", {"timeout": 20.0}, 30, zygote=zygote)
        assert again.value["isolation_spent_s"] < answer.value["isolation_spent_s"]  # the zygote is up now
    finally:
        await zygote.close()
