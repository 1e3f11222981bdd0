"""How much of an isolated run's budget is left when its child gets the request.

:func:`probes.support.isolation.run_isolated` counts its deadline from the parent's call, but the
child gets its request later: a zygote still starting under load, a fresh interpreter spawning.
The parent adds the seconds already gone to a dict payload under :data:`SPENT_KEY`; a child that
sizes its own timeouts subtracts them with :func:`budget_left`, so it ends its work and reports
what timed out (a FAIL naming the step) before the parent's kill (which leaves only a timeout
with nothing said).

A module of its own, without imports: a fresh-interpreter child runs ``probes.support.isolation``
as ``__main__``, and importing it again under its own name would load a second copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Key added to a dict payload: seconds of the run's budget already gone when the child got its
#: request.
SPENT_KEY = "isolation_spent_s"


def budget_left(payload: Mapping[str, Any], budget_s: float, *, floor_s: float = 0.5) -> float:
    """``budget_s`` less what getting the child took (never below ``floor_s``, so a child that
    starts late still makes its one attempt and reports it)."""
    return max(floor_s, budget_s - float(payload.get(SPENT_KEY) or 0.0))
