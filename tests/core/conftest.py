"""Fixtures of the core tests: a loopback HTTP target, misbehaving probe kinds, a captured logger."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Config, parse_config
from monitor.logs import make_logger
from probes.registry import PROBE_KINDS
from probes.support.masking import SecretMasker
from tests.core import kinds
from tests.core.target import Target

REPO = Path(__file__).resolve().parents[2]
FAKE_KEY = "hk_test_" + "k" * 32


@pytest.fixture
def target() -> Iterator[Target]:
    """A real HTTP server on 127.0.0.1:<free port>, mode "ok" to start with."""
    server = Target().start()
    yield server
    server.stop()


@pytest.fixture
def test_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registers the misbehaving kinds and lets isolated children import them."""
    monkeypatch.setitem(PROBE_KINDS, "t_hang", kinds.HangProbe)
    monkeypatch.setitem(PROBE_KINDS, "t_boom", kinds.BoomProbe)
    monkeypatch.setitem(PROBE_KINDS, "t_sleep", kinds.SleepProbe)
    monkeypatch.setitem(PROBE_KINDS, "t_block", kinds.BlockingProbe)
    monkeypatch.setitem(PROBE_KINDS, "t_iso_hang", kinds.IsolatedHangProbe)
    monkeypatch.setitem(PROBE_KINDS, "t_iso_echo", kinds.IsolatedEchoProbe)
    # The child runs `python -m probes.support.isolation` and imports tests.core.kinds from the repo root.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    kinds.SleepProbe.active.clear()
    kinds.SleepProbe.max_active.clear()
    kinds.SleepProbe.starts.clear()


class Captured:
    """A logger writing JSON lines into memory, with the masker it uses."""

    def __init__(self, secrets: list[str]) -> None:
        self.stream = io.StringIO()
        self.masker = SecretMasker(secrets)
        self.logger: Any = make_logger(self.masker, stream=self.stream, json=True, level="debug")

    @property
    def text(self) -> str:
        """Everything logged so far."""
        return self.stream.getvalue()


@pytest.fixture
def captured() -> Captured:
    """A captured JSON logger that masks FAKE_KEY."""
    return Captured([FAKE_KEY])


def config_from(text: str) -> Config:
    """Parse a config with FAKE_KEY available as ${KEY}."""
    return parse_config(text, source="test.yaml", env={"KEY": FAKE_KEY})
