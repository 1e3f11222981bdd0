"""Fixtures the probe-kind tests share with the core suite: a real target server on loopback and
captured, masked logs (the ``http`` kind's tests run through the runner like the core tests)."""

from tests.core.conftest import captured, target

__all__ = ["captured", "target"]
