"""Functions run in the isolation subprocess by the isolation tests (this directory on PYTHONPATH)."""

from __future__ import annotations

import threading
from typing import Any


def answer_and_leave_a_worker(_payload: Any) -> str:
    """Answer at once, leaving behind a non-daemon thread that blocks (like an abandoned step)."""
    blocker = threading.Event()
    threading.Thread(target=blocker.wait, args=(120,), daemon=False).start()
    return "answered"
