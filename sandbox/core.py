"""``Sandbox``: start, watch and stop the local platform (a real MLflow server plus the platform process).

Two child processes, each in its own process group (so Ctrl-C in a terminal reaches only the owner,
which then stops them in order, and so a group kill also reaches MLflow's uvicorn child):

- ``mlflow server --static-prefix /mlflow --serve-artifacts --artifacts-destination <dir>`` on a free
  loopback port, SQLite backend in the work directory, one worker, no job runner;
- ``python -m sandbox.platform``: the auth, registry and admin listeners (see ``sandbox.platform``),
  which also kills MLflow's group if the owner dies without calling :meth:`Sandbox.stop`.

Logs go to ``<workdir>/logs/{mlflow,platform}.log``; a start-up failure names the component and
shows the tail of its log.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from sandbox.control import STATE_FILE, FaultControl, SandboxState
from sandbox.faults import validate_fault_names
from sandbox.platform import PORTS_FILE
from sandbox.settings import Delays, PlatformSettings, SandboxKeys

_LOG_TAIL_CHARS = 3000


class SandboxStartError(RuntimeError):
    """A component did not become ready; the message names it and quotes the tail of its log."""

    def __init__(self, component: str, reason: str, log_path: Path | None) -> None:
        tail = _tail(log_path) if log_path else ""
        message = f"sandbox component {component!r} failed to start: {reason}"
        if log_path:
            message += f"\n--- last lines of {log_path} ---\n{tail}"
        super().__init__(message)
        self.component = component
        self.log_path = log_path


def _tail(path: Path, chars: int = _LOG_TAIL_CHARS) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return data[-chars:].decode("utf-8", errors="replace")


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for MLflow, which cannot be handed a bound socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace_s``, and reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    # The group may outlive its leader (MLflow's uvicorn child): kill whatever is left.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


class Sandbox:
    """The local platform. ``start()`` it (or use it as a context manager), then point clients at
    :attr:`auth_url` and :attr:`registry_url` with :attr:`keys`, and switch faults at runtime.

    Ports: ``auth_port``/``registry_port`` are tried first (0 means any free port); when taken, a free
    port is used and the actual one is in the URL attributes. MLflow always gets a free port.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        auth_port: int = 8101,
        registry_port: int = 8102,
        faults: Iterable[str] = (),
        delays: Delays | None = None,
        host: str = "127.0.0.1",
        mlflow_executable: str | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self._requested_auth_port = auth_port
        self._requested_registry_port = registry_port
        self._initial_faults = validate_fault_names(faults)
        self.delays = delays or Delays()
        self._host = host
        self._mlflow_executable = mlflow_executable
        self.keys: SandboxKeys = SandboxKeys.generate()
        self.auth_url = ""
        self.registry_url = ""
        self.mlflow_url = ""
        self._admin_url = ""
        self._admin_token = ""
        self._mlflow: subprocess.Popen[bytes] | None = None
        self._platform: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []
        self._control: FaultControl | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def log_dir(self) -> Path:
        """Where the components' logs are written."""
        return self.workdir / "logs"

    @property
    def running(self) -> bool:
        """Whether both children are alive."""
        return all(p is not None and p.poll() is None for p in (self._mlflow, self._platform))

    @property
    def pids(self) -> dict[str, int]:
        """The children's pids (each also its process group id)."""
        found = {"mlflow": self._mlflow, "platform": self._platform}
        return {name: proc.pid for name, proc in found.items() if proc is not None}

    def start(self, timeout_s: float = 90.0) -> Sandbox:
        """Start MLflow and the platform and wait until both serve, or raise :class:`SandboxStartError`.

        Keys are generated anew on every start. On any failure everything started so far is stopped.
        """
        if self._platform is not None:
            raise RuntimeError("sandbox already started")
        self.keys = SandboxKeys.generate()
        self._admin_token = secrets.token_urlsafe(32)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        for stale in (PORTS_FILE, STATE_FILE):
            (self.workdir / stale).unlink(missing_ok=True)
        atexit.register(self.stop)
        try:
            self._spawn_mlflow()
            self._spawn_platform()
            self._wait_ready(time.monotonic() + timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _open_log(self, name: str) -> IO[bytes]:
        handle = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(handle)
        return handle

    def _mlflow_command(self, port: int) -> list[str]:
        executable = self._mlflow_executable or shutil.which("mlflow", path=str(Path(sys.executable).parent))
        base = [executable] if executable else [sys.executable, "-m", "mlflow"]
        return [
            *base,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--static-prefix",
            "/mlflow",
            "--backend-store-uri",
            f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.workdir / "artifacts"),
            # New experiments (and the Default one) get mlflow-artifacts:/<id>, so client uploads
            # travel through the REST artifact routes -- through the proxy, as in production.
            "--default-artifact-root",
            "mlflow-artifacts:/",
        ]

    def _spawn_mlflow(self) -> None:
        port = free_port()
        self.mlflow_url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            # No background job runner (its huey consumers would be more processes to reap).
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "PYTHONUNBUFFERED": "1",
        }
        log = self._open_log("mlflow")
        self._mlflow = subprocess.Popen(
            self._mlflow_command(port),
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _spawn_platform(self) -> None:
        assert self._mlflow is not None
        settings = PlatformSettings(
            workdir=str(self.workdir),
            mlflow_url=self.mlflow_url,
            keys=self.keys,
            admin_token=self._admin_token,
            host=self._host,
            auth_port=self._requested_auth_port,
            registry_port=self._requested_registry_port,
            delays=self.delays,
            faults=self._initial_faults,
            mlflow_pgid=self._mlflow.pid,
        )
        log = self._open_log("platform")
        self._platform = subprocess.Popen(
            [sys.executable, "-m", "sandbox.platform", str(os.getpid())],
            cwd=self.workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self._platform.stdin is not None
        # Settings (keys, token) travel on stdin only: argv and environment are visible to `ps`.
        self._platform.stdin.write(json.dumps(settings.to_json_dict()).encode())
        self._platform.stdin.close()

    def _check_alive(self, name: str, proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None and proc.poll() is not None:
            raise SandboxStartError(name, f"exited with code {proc.returncode}", self.log_dir / f"{name}.log")

    def _wait_ready(self, deadline: float) -> None:
        ports_file = self.workdir / PORTS_FILE
        platform_ports: dict[str, int] | None = None
        mlflow_ready = platform_ready = False
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while True:
                self._check_alive("mlflow", self._mlflow)
                self._check_alive("platform", self._platform)
                if platform_ports is None and ports_file.exists():
                    platform_ports = json.loads(ports_file.read_text())
                    self.auth_url = f"http://{self._host}:{platform_ports['auth_port']}"
                    self.registry_url = f"http://{self._host}:{platform_ports['registry_port']}"
                    self._admin_url = f"http://127.0.0.1:{platform_ports['admin_port']}"
                if not mlflow_ready:
                    mlflow_ready = _answers_200(client, self.mlflow_url + "/mlflow/health")
                if platform_ports is not None and not platform_ready:
                    # The admin listener is the one no fault touches: it answering means the
                    # platform's servers are up, whatever faults it started with.
                    platform_ready = _answers_200(
                        client,
                        self._admin_url + "/faults",
                        headers={"Authorization": f"Bearer {self._admin_token}"},
                    )
                if mlflow_ready and platform_ready:
                    break
                if time.monotonic() > deadline:
                    component = "mlflow" if not mlflow_ready else "platform"
                    raise SandboxStartError(
                        component, "not ready before the deadline", self.log_dir / f"{component}.log"
                    )
                time.sleep(0.2)
        assert self._mlflow is not None
        assert self._platform is not None
        self._control = FaultControl(self._admin_url, self._admin_token)
        SandboxState(
            owner_pid=os.getpid(),
            platform_pid=self._platform.pid,
            mlflow_pid=self._mlflow.pid,
            auth_url=self.auth_url,
            registry_url=self.registry_url,
            mlflow_url=self.mlflow_url,
            admin_url=self._admin_url,
            admin_token=self._admin_token,
        ).write(self.workdir)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop every child (platform first, it also kills MLflow; then MLflow's group). Idempotent."""
        atexit.unregister(self.stop)
        for stale in (STATE_FILE, PORTS_FILE):
            (self.workdir / stale).unlink(missing_ok=True)
        for proc in (self._platform, self._mlflow):
            if proc is not None:
                _stop_group(proc, grace_s)
        self._platform = self._mlflow = None
        self._control = None
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what clients need ----------------------------------------------------------------------

    @property
    def mlflow_tracking_uri(self) -> str:
        """The tracking URI an MLflow client uses, through the proxy (token: a key)."""
        return self.registry_url + "/api/mlflow"

    def env(self) -> dict[str, str]:
        """The environment that points the monitor (and tests) at this sandbox. Holds the keys."""
        return {
            "AUTH_URL": self.auth_url,
            "REGISTRY_URL": self.registry_url,
            "SYNTHMON_API_KEY": self.keys.admin,
            "SANDBOX_NON_ADMIN_API_KEY": self.keys.non_admin,
            "SANDBOX_REVOKED_API_KEY": self.keys.revoked,
            "SANDBOX_MLFLOW_URL": self.mlflow_url,
            "SANDBOX_MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
        }

    # -- faults -------------------------------------------------------------------------------

    @property
    def faults(self) -> FaultControl:
        """The fault handle of the running sandbox."""
        if self._control is None:
            raise RuntimeError("sandbox is not running")
        return self._control

    def set_faults(self, *names: str) -> tuple[str, ...]:
        """Make exactly ``names`` active."""
        return self.faults.set_faults(*names)

    def add_fault(self, name: str) -> tuple[str, ...]:
        """Activate one more fault."""
        return self.faults.add_fault(name)

    def clear_faults(self) -> tuple[str, ...]:
        """Back to healthy."""
        return self.faults.clear_faults()

    def active_faults(self) -> tuple[str, ...]:
        """The faults active right now."""
        return self.faults.active_faults()


def _answers_200(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        return client.get(url, headers=headers).status_code == 200
    except httpx.TransportError:
        return False
