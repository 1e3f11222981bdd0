"""pytest plugin: one sandbox per test session, and a ``faults`` handle reset after every test.

Enable with ``pytest_plugins = ["sandbox.pytest_plugin"]`` (the top-level ``tests/conftest.py`` does).
The sandbox listens on free ports -- never the 8101/8102 defaults, so a test run never collides with
a running ``synthmon sandbox up`` -- and starts lazily, only when a test asks for it. Tests that use
it carry ``@pytest.mark.sandbox`` (nothing is marked automatically).

Fixtures:

- ``sandbox`` (session): a started :class:`sandbox.Sandbox`; ``sandbox.keys``, ``sandbox.env()``,
  ``sandbox.auth_url``, ``sandbox.registry_url``, ``sandbox.mlflow_url``.
- ``faults`` (function): the sandbox's :class:`sandbox.FaultControl`, cleared before and after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.control import FaultControl
from sandbox.core import Sandbox

#: MLflow's first start migrates its SQLite database; on a busy 2-core machine that takes a while.
START_TIMEOUT_S = 180.0


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A running sandbox for the whole session, stopped at its end (also when tests fail)."""
    box = Sandbox(tmp_path_factory.mktemp("sandbox"), auth_port=0, registry_port=0)
    box.start(timeout_s=START_TIMEOUT_S)
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def faults(sandbox: Sandbox) -> Iterator[FaultControl]:
    """The session sandbox's fault handle; healthy before the test, cleared after it."""
    control = sandbox.faults
    control.clear_faults()
    try:
        yield control
    finally:
        control.clear_faults()
