"""Fixtures of the SLO tests (the store on every backend)."""

from tests.slo.slo_helpers import slo_store

__all__ = ["slo_store"]
