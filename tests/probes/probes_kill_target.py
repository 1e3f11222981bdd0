"""A registration child that dies mid-way, like a run killed by its deadline (test helper).

Runs in the isolation subprocess (``run_isolated("probes_kill_target:killed_registration", ...)``
with this directory on PYTHONPATH). The process exits hard when the probe starts downloading the
model: the run, logged model and model version exist, and no cleanup ever runs.
"""

from __future__ import annotations

import os
from typing import Any


def killed_registration(payload: dict[str, Any]) -> Any:
    """Run the real registration child, but kill the process at the ``load`` step."""
    import mlflow.pyfunc

    from probes.support.registration_child import main

    def die(*_args: Any, **_kwargs: Any) -> Any:
        os._exit(137)

    mlflow.pyfunc.load_model = die
    return main(payload)
