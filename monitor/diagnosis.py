"""Failure signatures → likely cause, hint and action (interface; the built-in table is issue #4's).

The runner calls :func:`diagnose` on every FAIL/ERROR step. Signatures are matched in order:
config-supplied ones first, then the built-ins from the platform contract's §6.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from probes.base import Diagnosis, StepResult


class Signature(BaseModel):
    """One row: conditions (all given ones must match) → a diagnosis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cause: str
    hint: str
    action: str = ""
    http_status: int | None = None
    path_regex: str | None = None
    body_regex: str | None = None
    error_class: str | None = None
    probe: str | None = None
    step: str | None = None


BUILTIN_SIGNATURES: tuple[Signature, ...] = ()


def diagnose(
    step: StepResult, signatures: Sequence[Signature] = BUILTIN_SIGNATURES, *, probe: str | None = None
) -> Diagnosis | None:
    """The first matching signature's diagnosis for a failing ``step``, or None."""
    return None
