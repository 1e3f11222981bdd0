"""Fault control of a running sandbox, and the state file through which other processes find it.

:class:`FaultControl` talks to the platform's loopback admin endpoint with the per-start token. The
state file (``sandbox.json`` in the work directory, mode 0600 because it holds that token) is
written by :class:`sandbox.Sandbox` once it is ready and removed when it stops; the
``sandbox fault|clear|status`` commands read it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from sandbox.faults import validate_delays, validate_fault_names

#: The state file's name inside the sandbox's work directory.
STATE_FILE = "sandbox.json"


class SandboxNotRunningError(RuntimeError):
    """No running sandbox was found (no state file, or its admin endpoint does not answer)."""


class FaultControlError(RuntimeError):
    """The admin endpoint refused a request (unknown fault, bad token)."""


class FaultControl:
    """Switches the faults of one running sandbox. The ``faults`` pytest fixture yields one.

    Methods mirror :class:`sandbox.Sandbox`'s: ``set_faults``, ``add_fault``, ``clear_faults``,
    ``active_faults`` (with the short aliases ``set``, ``add``, ``clear``, ``active``). Unknown names
    raise :class:`~sandbox.faults.UnknownFaultError` before any request is made.
    """

    def __init__(self, admin_url: str, token: str, *, timeout_s: float = 5.0) -> None:
        self._url = admin_url.rstrip("/")
        self._token = token
        self._timeout = timeout_s

    def __repr__(self) -> str:
        return f"FaultControl({self._url!r})"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            answer = httpx.request(
                method,
                self._url + path,
                json=body,
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._timeout,
                trust_env=False,
            )
        except httpx.TransportError as exc:
            raise SandboxNotRunningError(f"sandbox admin endpoint {self._url} unreachable: {exc}") from exc
        if answer.status_code != 200:
            raise FaultControlError(f"{method} {path}: HTTP {answer.status_code} {answer.text[:300]}")
        data: dict[str, Any] = answer.json()
        return data

    def set_faults(self, *names: str) -> tuple[str, ...]:
        """Make exactly ``names`` active; returns the active set."""
        wanted = validate_fault_names(names)
        return tuple(self._call("PUT", "/faults", {"faults": list(wanted)})["active"])

    def add_fault(self, name: str) -> tuple[str, ...]:
        """Activate one more fault; returns the active set."""
        validate_fault_names((name,))
        return tuple(self._call("POST", f"/faults/{name}")["active"])

    def clear_faults(self) -> tuple[str, ...]:
        """Back to healthy; returns the (empty) active set."""
        return tuple(self._call("DELETE", "/faults")["active"])

    def set_delays(self, **delays: float) -> dict[str, float]:
        """Set slow faults' delays (``artifacts_slow_s=1.5``) until the faults are cleared; returns
        every delay set at runtime. Bad names or values raise ``ValueError`` before any request."""
        validate_delays(delays)
        answer: dict[str, float] = self._call("PUT", "/delays", dict(delays))["delays"]
        return answer

    def delays(self) -> dict[str, float]:
        """The delays set at runtime (empty: every slow fault uses its start-up delay)."""
        answer: dict[str, float] = self._call("GET", "/faults")["delays"]
        return answer

    def active_faults(self) -> tuple[str, ...]:
        """The faults active right now."""
        return tuple(self._call("GET", "/faults")["active"])

    def status(self) -> dict[str, Any]:
        """Components, URLs, pids and active faults, as the platform reports them."""
        return self._call("GET", "/status")

    # Short aliases, for tests that read better as ``faults.set("mlflow-down")``.
    set = set_faults
    add = add_fault
    clear = clear_faults
    active = active_faults


@dataclass(frozen=True, slots=True)
class SandboxState:
    """What the state file records about a running sandbox (the admin token is its only secret)."""

    owner_pid: int
    platform_pid: int
    mlflow_pid: int
    auth_url: str
    registry_url: str
    mlflow_url: str
    admin_url: str
    admin_token: str

    def control(self) -> FaultControl:
        """A :class:`FaultControl` for this sandbox."""
        return FaultControl(self.admin_url, self.admin_token)

    def write(self, workdir: Path) -> Path:
        """Write the state file atomically, readable by the owner only."""
        path = workdir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle, indent=2)
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, workdir: Path) -> SandboxState:
        """The state of the sandbox running in ``workdir``, or :class:`SandboxNotRunningError`."""
        path = workdir / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise SandboxNotRunningError(
                f"no sandbox state file at {path}: is `sandbox up` running?"
            ) from exc
        except ValueError as exc:
            raise SandboxNotRunningError(f"unreadable sandbox state file {path}: {exc}") from exc
        return cls(**data)
