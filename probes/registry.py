"""The explicit registry of probe kinds the config validates against.

``PROBE_KINDS`` maps the ``kind:`` of a probe in config to its class. A test asserts that every
kind here has a test file. Modules must import cheaply: heavy clients (mlflow) are imported inside
the code that runs in the subprocess, never at module level.
"""

from __future__ import annotations

from probes.alb_health import AlbHealthProbe
from probes.artifact_roundtrip import ArtifactRoundtripProbe
from probes.auth import AuthProbe
from probes.base import ProbeKind
from probes.http import HttpProbe
from probes.mlflow_api import MlflowApiProbe
from probes.registration import RegistrationProbe

PROBE_KINDS: dict[str, ProbeKind] = {
    "http": HttpProbe,
    "auth": AuthProbe,
    "alb_health": AlbHealthProbe,
    "mlflow_api": MlflowApiProbe,
    "artifact_roundtrip": ArtifactRoundtripProbe,
    "registration": RegistrationProbe,
}
