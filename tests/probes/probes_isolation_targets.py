"""Functions run in the isolation subprocess by the isolation tests (this directory on PYTHONPATH)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def answer_and_leave_a_worker(_payload: Any) -> str:
    """Answer at once, leaving behind a non-daemon thread that blocks (like an abandoned step)."""
    blocker = threading.Event()
    threading.Thread(target=blocker.wait, args=(120,), daemon=False).start()
    return "answered"


def whoami(_payload: Any) -> dict[str, Any]:
    """Who this child is: pid, parent, session and group, and the names in its environment."""
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "pgid": os.getpgid(0),
        "env": dict(os.environ),
    }


def hang_with_helper(payload: dict[str, Any]) -> None:
    """Start a grandchild, write both pids to ``payload["pid_file"]``, then block for good."""
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    Path(payload["pid_file"]).write_text(f"{os.getpid()} {helper.pid}")
    time.sleep(600)


def answer_when_told(payload: dict[str, Any]) -> str:
    """Write this pid to ``payload["pid_file"]``, answer once ``payload["go_file"]`` exists."""
    Path(payload["pid_file"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not Path(payload["go_file"]).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "answered late"


def crash(_payload: Any) -> None:
    """Say why on stderr, then die with code 7 and no answer."""
    print("fatal: the client library gave up", file=sys.stderr)
    sys.stderr.flush()
    os._exit(7)


#: Marker lines a function could write to fd 1 without knowing the run's nonce.
FORGED = (b'@@synthmon-result@@ "forged"\n', b'@@synthmon-result@@ 00 "forged"\n')


def forge_then_answer(_payload: Any) -> str:
    """Write forged answers and an unterminated line to fd 1, then answer for real."""
    for line in FORGED:
        os.write(1, line)
    os.write(1, b"a partial line, no newline")
    return "real"


def forge_then_die(_payload: Any) -> None:
    """Write forged answers to fd 1, then exit 0 without answering."""
    for line in FORGED:
        os.write(1, line)
    os._exit(0)


def echo(payload: Any) -> Any:
    """The payload as the child received it."""
    return payload
