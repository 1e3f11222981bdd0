"""The Dockerfile: its promises (base, user, port, health check, signals, store), its lock and build stage.

No Docker engine runs here, so the build stage is *replayed*: its COPY lines copy the same files
(honouring .dockerignore) into a temp "image root", its RUN lines run there with ``/opt/venv`` and
``/src`` mapped into it. That proves the install line works and installs runtime deps only. The
replay reuses pip's cache (the Dockerfile disables it for small layers; here it only costs time):
the first run downloads the runtime set (minutes), later runs take well under a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .dockerfile import ROOT, Instruction, env_of, ignored, instructions, stage

INSTRS = instructions()
RUNTIME = [i for i in INSTRS if i.stage == INSTRS[-1].stage]


def _one(keyword: str, instrs: list[Instruction] = RUNTIME) -> Instruction:
    found = [i for i in instrs if i.keyword == keyword]
    assert found, f"no {keyword} in the runtime stage"
    return found[-1]  # Docker uses the last one


def test_both_stages_start_from_python_311_slim_pinned_by_digest() -> None:
    """The build and runtime stages are the same python:3.11-slim image, named by its sha256 digest."""
    froms = [i.args.split()[0] for i in INSTRS if i.keyword == "FROM"]
    assert len(froms) == 2
    assert froms[0] == froms[1]
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", froms[0]), froms[0]
    assert [i.stage for i in INSTRS if i.keyword == "FROM"] == ["build", "runtime"]


def test_runtime_runs_as_a_fixed_non_root_user() -> None:
    """USER is numeric and not root, and the user owns the writable store directory."""
    user = _one("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) != 0
    assert gid.isdigit()
    assert int(gid) != 0
    setup = " ".join(i.args for i in RUNTIME if i.keyword == "RUN")
    assert f"--uid {uid}" in setup
    assert re.search(r"install -d -o synthmon -g synthmon -m 07\d0 /var/lib/synthmon", setup)


def test_entrypoint_command_port_and_stop_signal() -> None:
    """ENTRYPOINT synthmon, CMD `run --config /etc/synthmon/config.yaml`, EXPOSE 9710, STOPSIGNAL SIGTERM."""
    assert _one("ENTRYPOINT").exec_form() == ["synthmon"]
    assert _one("CMD").exec_form() == ["run", "--config", "/etc/synthmon/config.yaml"]
    assert _one("EXPOSE").args == "9710"
    assert _one("STOPSIGNAL").args == "SIGTERM"


def test_runtime_environment_points_at_the_writable_store_and_default_config() -> None:
    """The SQLite store lives in /var/lib/synthmon, the config in /etc/synthmon, listening on :9710."""
    env = env_of(RUNTIME)
    assert env["SYNTHMON_STORE_URL"] == "sqlite:////var/lib/synthmon/synthmon.db"
    assert env["SYNTHMON_CONFIG"] == "/etc/synthmon/config.yaml"
    assert env["SYNTHMON_LISTEN"] == "0.0.0.0:9710"
    assert env["PATH"].startswith("/opt/venv/bin:")
    copies = [i.args for i in RUNTIME if i.keyword == "COPY"]
    assert "config.yaml /etc/synthmon/config.yaml" in copies
    assert "--from=build /opt/venv /opt/venv" in copies


def test_pip_installs_runtime_dependencies_only_from_the_lock() -> None:
    """Every pip install is `pip install -c constraints.txt .`: no extra, no editable install, no mlflow."""
    pip_lines = [i.args for i in INSTRS if i.keyword == "RUN" and "pip install" in i.args]
    assert pip_lines, "no pip install in the Dockerfile"
    for line in pip_lines:
        assert "[" not in line, line  # no extras at all
        assert " -e " not in line, line
        assert "mlflow" not in line, line
        assert line.split("pip install", 1)[1].split() == ["-c", "constraints.txt", "."], line


# ---- the lock ----------------------------------------------------------------------------------


def _pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a constraints file or ``pip freeze``, by canonical name."""
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not an exact pin: {line!r}"
        key = canonicalize_name(name)
        assert key not in pins, f"pinned twice: {name}"
        pins[key] = version.strip()
    return pins


LOCK = _pins((ROOT / "constraints.txt").read_text())


def test_lock_pins_every_runtime_dependency_within_its_range() -> None:
    """Each dependency of pyproject.toml is in constraints.txt, at a version its range accepts."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    missing, outside = [], []
    for spec in project["dependencies"]:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.11"}):
            continue  # not installed in the image (another Python or platform)
        pinned = LOCK.get(canonicalize_name(req.name))
        if pinned is None:
            missing.append(req.name)
        elif not req.specifier.contains(pinned, prereleases=True):
            outside.append(f"{req.name}=={pinned} (wants {req.specifier})")
    assert missing == [], "not in constraints.txt; run `make lock`"
    assert outside == [], "constraints.txt is outside pyproject's ranges; run `make lock`"


def test_lock_holds_no_extra_or_tooling_packages() -> None:
    """The lock is the runtime closure only: no sandbox server, test or build tools."""
    for name in ("mlflow", "synthmon", "pytest", "ruff", "mypy", "pip", "setuptools", "wheel"):
        assert name not in LOCK, name


def test_no_curl_or_wget_is_needed() -> None:
    """The health check and every RUN line work in the slim image (no curl or wget there)."""
    for ins in INSTRS:
        assert "curl" not in ins.args, ins
        assert "wget" not in ins.args, ins


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    """Each COPY source exists in the repository and .dockerignore does not leave it out."""
    for ins in INSTRS:
        if ins.keyword != "COPY" or ins.args.startswith("--from"):
            continue
        *sources, _dest = ins.args.split()
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: missing from the repository"
            assert not ignored(src), f"COPY {src}: excluded by .dockerignore"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    """The venv, .git, tests, local state, .env files and byte-code never reach the build context."""
    for path in (".venv/bin/python", ".git/config", "tests/conftest.py", "var/synthmon.db", ".env"):
        assert ignored(path), path
    assert ignored("monitor/__pycache__/app.cpython-311.pyc")
    assert not ignored("monitor/app.py")
    assert not ignored("pyproject.toml")


# ---- the health check, run for real ------------------------------------------------------------


@pytest.fixture(scope="module")
def healthz_server() -> Iterator[tuple[int, list[int]]]:
    """A loopback server whose /healthz answers the status at the head of a mutable list."""
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = status[0] if self.path == "/healthz" else 404
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], status
    server.shutdown()
    server.server_close()


def _healthcheck(argv: list[str], port: int) -> int:
    env = {**os.environ, "SYNTHMON_LISTEN": f"0.0.0.0:{port}"}
    cmd = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    return subprocess.run(cmd, env=env, capture_output=True, timeout=30, check=False).returncode


def test_healthcheck_is_healthy_on_200_and_unhealthy_on_503_or_nothing_listening(
    healthz_server: tuple[int, list[int]],
) -> None:
    """The HEALTHCHECK command exits 0 for /healthz 200, 1 for 503, 1 when the port is closed."""
    check = _one("HEALTHCHECK")
    assert "--start-period=" in check.args
    argv = check.exec_form()
    assert argv is not None
    assert argv[0] == "python"
    port, status = healthz_server
    status[0] = 200
    assert _healthcheck(argv, port) == 0
    status[0] = 503
    assert _healthcheck(argv, port) == 1
    assert _healthcheck(argv, _closed_port()) == 1


def test_healthcheck_also_speaks_to_a_tls_only_listener(tmp_path: Path) -> None:
    """With web.tls_server_config the listener serves HTTPS only: the check falls back to it."""
    from tests.reliability.tls import self_signed

    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    status_of = {"code": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status_of["code"])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        argv = _one("HEALTHCHECK").exec_form()
        assert argv is not None
        assert _healthcheck(argv, server.server_address[1]) == 0
        status_of["code"] = 503
        assert _healthcheck(argv, server.server_address[1]) == 1
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    """A loopback port that nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ---- the build stage, replayed -----------------------------------------------------------------

_ABS = re.compile(r"(?<![\w./-])/(opt|src)\b")


def _replay_build_stage(fs: Path) -> Path:
    """Run the build stage's WORKDIR/COPY/RUN under ``fs`` (the image root); returns the venv."""
    # The machine's pip settings (index, wheel dirs) stay; a disabled cache would not.
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_NO_CACHE_DIR", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    python_dir = str(Path(sys.executable).resolve().parent)
    env["PATH"] = f"{python_dir}:{env['PATH']}"  # `python` = this interpreter (3.11, like the image)
    fs.mkdir(parents=True, exist_ok=True)
    workdir = fs
    for ins in stage("build", INSTRS):
        if ins.keyword == "ENV":
            for key, value in env_of([ins]).items():
                if key != "PIP_NO_CACHE_DIR":  # reuse pip's cache: the replay is about correctness
                    env[key] = value
        elif ins.keyword == "WORKDIR":
            workdir = fs / ins.args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            *sources, dest = ins.args.split()
            target = fs / dest.lstrip("/") if dest.startswith("/") else workdir / dest
            for src in sources:
                origin = ROOT / src
                if origin.is_dir():
                    # Docker copies a directory's contents into the destination.
                    shutil.copytree(
                        origin,
                        target,
                        ignore=lambda d, names: [
                            n for n in names if ignored(str((Path(d) / n).relative_to(ROOT)))
                        ],
                        dirs_exist_ok=True,
                    )
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
        elif ins.keyword == "RUN":
            command = _ABS.sub(lambda m: f"{fs}/{m.group(1)}", ins.args).replace("--no-cache-dir", "")
            proc = subprocess.run(
                ["sh", "-c", command],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            assert proc.returncode == 0, f"RUN {ins.args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    venv = fs / "opt" / "venv"
    assert (venv / "bin" / "python").exists()
    return venv


@pytest.mark.timeout(900)
def test_build_stage_installs_synthmon_with_runtime_dependencies_only(tmp_path: Path) -> None:
    """Replaying the build stage yields a venv whose `synthmon` runs, with the MLflow client only,
    and every installed distribution is the lock's: same set, same versions."""
    venv = _replay_build_stage(tmp_path / "fs")
    bin_ = venv / "bin"
    freeze = subprocess.run(
        [bin_ / "python", "-m", "pip", "freeze", "--exclude", "synthmon"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert _pins(freeze.stdout) == LOCK
    help_ = subprocess.run(
        [bin_ / "synthmon", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert help_.returncode == 0, help_.stderr
    assert "run" in help_.stdout
    probe = (
        "import importlib.metadata as m, importlib\n"
        "print(m.version('mlflow-skinny'))\n"
        "try:\n"
        "    m.version('mlflow')\n"
        "    print('FULL-MLFLOW-PRESENT')\n"
        "except m.PackageNotFoundError:\n"
        "    print('no-full-mlflow')\n"
        "import monitor.app, probes.registry\n"
        "print(sorted(probes.registry.PROBE_KINDS))\n"
    )
    out = subprocess.run(
        [bin_ / "python", "-c", probe], capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "no-full-mlflow" in out.stdout
    for kind in ("auth", "alb_health", "mlflow_api", "artifact_roundtrip", "registration"):
        assert kind in out.stdout
