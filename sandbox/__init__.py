"""A local copy of the monitored platform: a real MLflow server, an auth service and a registry proxy,
with switchable faults. For demos (``synthmon sandbox up``) and tests (``sandbox.pytest_plugin``).

Imports neither ``monitor`` nor ``probes``.
"""

from sandbox.control import FaultControl, FaultControlError, SandboxNotRunningError, SandboxState
from sandbox.core import Sandbox, SandboxStartError
from sandbox.faults import FAULTS, UnknownFaultError
from sandbox.settings import Delays, SandboxKeys, mask_key

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
