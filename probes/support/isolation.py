"""Run a function in a fresh Python subprocess with a hard deadline.

Heavy clients (MLflow) run here so that a hang, a leak or a crash never touches the daemon: the
child gets its input as JSON on stdin (never argv, which ``ps`` shows: the input may hold an API
key), writes its JSON answer on stdout, and is killed with its whole process group at the deadline.
Anything the function itself prints goes to stderr, which the caller receives for its logs.

The child does not inherit the daemon's environment: that holds the Slack token and webhook,
the store URL with its password and maybe the API key, none of which a probe needs. It gets an
allow-listed part of it (:func:`child_environment`: paths, locale, Python settings, proxies, CA
bundles) plus whatever the caller passes explicitly.

With a :class:`~probes.support.zygote.Zygote` the child is forked from a process that imported
the heavy modules once, instead of a fresh interpreter; everything above holds the same way, and any
zygote trouble makes that run spawn a fresh interpreter.

Child side (:func:`run_child`; ``python -m probes.support.isolation`` for a fresh interpreter) reads
``{"target": "module:function", "payload": {...}, "nonce": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import secrets
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.support.budget import SPENT_KEY

if TYPE_CHECKING:
    from probes.support.zygote import Zygote

# The answer is the last stdout line that starts with this marker and the run's nonce (sent on
# stdin only): whatever else writes to the real fd 1 (C extensions can) cannot be mistaken for it.
_MARKER = "@@synthmon-result@@ "
#: How long a killed child's pipes are drained before giving up on them (a helper that left its
#: process group may still hold them).
_DRAIN_S = 5.0
#: stderr kept for the caller (the tail, where tracebacks are).
STDERR_TAIL = 8000

#: Variables a child inherits by exact name: where things are, the locale, CA bundles for TLS.
INHERITED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "TMPDIR",
        "TEMP",
        "TMP",
        "TZ",
        "LANG",
        "LANGUAGE",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "VIRTUAL_ENV",
    }
)
#: ... and by prefix (``LC_ALL``, ``PYTHONPATH``) or suffix (``HTTPS_PROXY``, ``http_proxy``).
INHERITED_PREFIXES = ("LC_", "PYTHON")
INHERITED_SUFFIXES = ("_PROXY", "_proxy")


def child_environment(
    parent: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of an isolated child: the allow-listed part of ``parent`` plus ``extra``.

    ``parent`` defaults to this process's environment. Nothing else passes: a child that needs a
    variable (a test's ``PYTHONPATH`` is already allowed) gets it through ``extra``, explicitly.
    """
    source = os.environ if parent is None else parent
    env = {
        name: value
        for name, value in source.items()
        if name in INHERITED_NAMES or name.startswith(INHERITED_PREFIXES) or name.endswith(INHERITED_SUFFIXES)
    }
    env.update(extra or {})
    return env


class IsolationError(Exception):
    """The subprocess did not produce an answer. ``stderr_tail`` holds what it printed last."""

    def __init__(self, message: str, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail


class IsolationTimeout(IsolationError):
    """The subprocess was still running at its deadline and was killed (with its process group)."""


class IsolationCrash(IsolationError):
    """The subprocess exited without an answer (non-zero exit, signal, or unreadable output)."""


@dataclass(frozen=True, slots=True)
class IsolatedAnswer:
    """The function's JSON-ready return value, and the child's stderr tail (for logs)."""

    value: Any
    stderr_tail: str
    pid: int


def kill_group(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads (an isolated child and whatever it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_isolated(
    target: str,
    payload: Any,
    timeout_s: float,
    *,
    env: dict[str, str] | None = None,
    zygote: Zygote | None = None,
) -> IsolatedAnswer:
    """Call ``target`` (``"package.module:function"``) with ``payload`` in a subprocess.

    The child's environment is :func:`child_environment` with ``env`` added on top (``env`` adds
    to the allow-listed variables; it does not replace them). With ``zygote`` the child is forked
    from it when it can be (waiting at most half of ``timeout_s`` for it to start), else spawned
    as a fresh interpreter. Raises :class:`IsolationTimeout` when it runs past ``timeout_s`` (the
    process group is killed and reaped first), :class:`IsolationCrash` when it exits without an
    answer. Cancelling the awaiting task also kills the child.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout_s
    child_env = child_environment(extra=env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    nonce = secrets.token_hex(16)
    proc: Any = await zygote.spawn(child_env, timeout_s / 2) if zygote is not None else None
    if proc is None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "probes.support.isolation",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env,
            start_new_session=True,  # its own process group: killpg reaches grandchildren too
        )
    # The time spent getting a child (a zygote starting under load can take seconds) is gone from
    # the deadline: a dict payload carries it as SPENT_KEY, so a child with its own budget can end
    # it before the kill.
    if isinstance(payload, dict):
        payload = {**payload, SPENT_KEY: loop.time() - started}
    request = json.dumps({"target": target, "payload": payload, "nonce": nonce}).encode()
    try:
        out, err = await asyncio.wait_for(proc.communicate(request), timeout=max(0.0, deadline - loop.time()))
    except TimeoutError:
        kill_group(proc.pid)
        out, err = b"", b""
        with contextlib.suppress(TimeoutError):
            out, err = await asyncio.wait_for(proc.communicate(), _DRAIN_S)
        raise IsolationTimeout(
            f"{target} still running after {timeout_s:.1f}s; killed",
            err.decode(errors="replace")[-STDERR_TAIL:],
        ) from None
    except BaseException:
        kill_group(proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.communicate(), _DRAIN_S)
        raise
    finally:
        # A function that forked helpers must not leave them behind even when it answered.
        kill_group(proc.pid)
    tail = err.decode(errors="replace")[-STDERR_TAIL:]
    marker = f"{_MARKER}{nonce} "
    for line in reversed(out.decode(errors="replace").splitlines()):
        if line.startswith(marker):
            try:
                return IsolatedAnswer(json.loads(line[len(marker) :]), tail, proc.pid)
            except ValueError:
                break
    code = "unknown (its zygote exited)" if proc.returncode is None else proc.returncode
    raise IsolationCrash(f"{target} exited with code {code} and no answer", tail)


def run_child() -> int:
    """Child side: read the request, call the function with stdout redirected, print the answer.

    The answer starts a line of its own, whatever the function left unterminated on fd 1.
    """
    request = json.loads(sys.stdin.read())
    module_name, _, func_name = str(request["target"]).partition(":")
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # whatever the function prints is log material, not the answer
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        value = func(request["payload"])
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
    finally:
        sys.stdout = real_stdout
    real_stdout.write(f"\n{_MARKER}{request.get('nonce', '')} {json.dumps(value)}\n")
    real_stdout.flush()
    return 0


async def _await(awaitable: Any) -> Any:
    return await awaitable


if __name__ == "__main__":
    code = run_child()
    sys.stdout.flush()
    sys.stderr.flush()
    # The answer is out. Skip interpreter shutdown: it would wait on atexit handlers and on any
    # abandoned worker (a step that timed out) and make a finished child look hung to the parent.
    os._exit(code)
