"""A local copy of the monitored platform: a real MLflow server, an auth service and a registry proxy,
with switchable faults. For demos (``synthmon sandbox up``) and tests (``sandbox.pytest_plugin``).

Imports neither ``monitor`` nor ``probes``. The names below load on first use (PEP 562), so that
importing one module of the package (the fault table for ``synthmon --help``) does not start the
HTTP client and server stacks the platform needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.control import FaultControl, FaultControlError, SandboxNotRunningError, SandboxState
    from sandbox.core import Sandbox, SandboxStartError
    from sandbox.faults import FAULTS, UnknownFaultError
    from sandbox.settings import Delays, SandboxKeys, mask_key

_HOMES = {
    "FaultControl": "sandbox.control",
    "FaultControlError": "sandbox.control",
    "SandboxNotRunningError": "sandbox.control",
    "SandboxState": "sandbox.control",
    "Sandbox": "sandbox.core",
    "SandboxStartError": "sandbox.core",
    "FAULTS": "sandbox.faults",
    "UnknownFaultError": "sandbox.faults",
    "Delays": "sandbox.settings",
    "SandboxKeys": "sandbox.settings",
    "mask_key": "sandbox.settings",
}


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


__all__ = [
    "FAULTS",
    "Delays",
    "FaultControl",
    "FaultControlError",
    "Sandbox",
    "SandboxKeys",
    "SandboxNotRunningError",
    "SandboxStartError",
    "SandboxState",
    "UnknownFaultError",
    "mask_key",
]
