"""A pre-forked helper that gives isolated children without a fresh interpreter import each time.

Starting ``python`` and importing mlflow costs seconds of CPU; the MLflow client checks run every
minute. A zygote is a long-lived process, spawned by the daemon with the allow-listed environment
only (:func:`~probes.support.isolation.child_environment`), that imports the heavy modules once and
then does nothing but fork. Each child it forks is what :func:`~probes.support.isolation.run_isolated`
would have spawned: its own session and process group, stdin/stdout/stderr on pipes the daemon
owns (passed over an AF_UNIX socket), the run's own environment, the same request and answer, and
``os._exit`` at the end. The daemon still kills the child's process group at the deadline. The
request, which may hold an API key, goes from the daemon straight into the child's stdin: the
zygote never sees it.

Forking is only safe in a process without other threads: a zygote whose imports started a Python
thread refuses to serve. (Native threads of allocators that handle fork themselves, such as the
jemalloc thread pyarrow starts, are not Python threads; BLAS pools are kept from starting.)

Any zygote trouble (it cannot start, refuses, dies, hangs) makes that run use a fresh interpreter,
as before; a dead zygote is replaced at the next run. A zygote is
replaced after :data:`MAX_FORKS` children or :data:`MAX_AGE_S`, so a slow leak in what it
imported cannot grow forever.

Wire protocol (SOCK_SEQPACKET, one JSON object per message): the daemon sends ``{"id", "env"}``
with three fds (stdin, stdout, stderr); the zygote answers ``{"id", "pid"}`` once the child is in
its own session (or ``{"id", "error"}``), and ``{"id", "exit"}`` when it has reaped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from probes.support.isolation import child_environment, kill_group, run_child

#: What a zygote imports before it forks: mlflow and the modules isolated children run.
PRELOAD = (
    "mlflow",
    "mlflow.tracking",
    "probes.support.child",
    "probes.support.mlflow_child",
    "probes.support.registration_child",
)
#: Replace a zygote after this many children, or when it is this old.
MAX_FORKS = 1000
MAX_AGE_S = 6 * 3600.0
#: A zygote that is not ready this long after its start is killed (importing mlflow under load
#: takes seconds, not minutes).
BOOT_TIMEOUT_S = 120.0
#: After a zygote failed to start, runs use fresh interpreters this long before the next attempt.
RETRY_AFTER_S = 600.0
#: A fork request not answered within this long means the zygote hangs: it is killed.
FORK_TIMEOUT_S = 10.0
#: Set in the zygote before its imports, so that no library starts worker threads there (OpenBLAS
#: pools, telemetry); children inherit them only as far as they are not in the run's environment.
FORK_SAFE_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}
_MSG_MAX = 1 << 20


class ZygoteUnavailable(Exception):
    """This run cannot be forked by a zygote; the caller spawns a fresh interpreter instead."""


class _NotReadyYet(ZygoteUnavailable):
    """The zygote is still importing: no trouble, that run just does not wait for it."""


def _startup_vars(env: dict[str, str]) -> dict[str, str]:
    """Variables the interpreter reads when it starts (``PYTHONPATH``...): a fork cannot apply them."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


class ForkedChild:
    """A child forked by a zygote, shaped like ``asyncio.subprocess.Process`` for ``run_isolated``."""

    def __init__(self, pid: int, fds: tuple[int, int, int], exited: asyncio.Future[int | None]) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._fds = fds
        self._exited = exited
        self._io: asyncio.Future[tuple[bytes, bytes]] | None = None

    async def communicate(self, input: bytes | None = None) -> tuple[bytes, bytes]:
        """Write ``input``, read stdout and stderr to their end, wait for the exit status.

        Safe to call again after a cancelled call (it continues the same exchange). The exit
        status stays None when the zygote died before reporting it.
        """
        if self._io is None:
            self._io = asyncio.ensure_future(self._exchange(input or b""))
        return await asyncio.shield(self._io)

    async def _exchange(self, data: bytes) -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        stdin, stdout, stderr = (
            os.fdopen(fd, mode, 0) for fd, mode in zip(self._fds, ("wb", "rb", "rb"), strict=True)
        )
        writer, _ = await loop.connect_write_pipe(asyncio.Protocol, stdin)
        writer.write(data)
        writer.close()  # after the buffer is written: the child then reads EOF

        async def read_all(pipe: Any) -> bytes:
            reader = asyncio.StreamReader()
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
            try:
                return await reader.read()
            finally:
                transport.close()

        try:
            out, err = await asyncio.gather(read_all(stdout), read_all(stderr))
            self.returncode = await self._exited
        finally:
            writer.close()
        return out, err


@dataclass
class _Request:
    pid: asyncio.Future[int]
    exited: asyncio.Future[int | None]
    abandoned: bool = False


@dataclass
class _Instance:
    """One zygote process and the daemon's end of its socket."""

    proc: asyncio.subprocess.Process
    sock: socket.socket
    boot_env: dict[str, str]
    started: float
    forks: int = 0
    retiring: bool = False
    pending: dict[int, _Request] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.reader is not None and not self.reader.done()

    def shut(self) -> None:
        """Shut the socket down: the zygote exits on EOF; requests waiting on it are answered."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        for request in self.pending.values():
            if not request.pid.done():
                request.pid.set_exception(ZygoteUnavailable("the zygote exited"))
            if not request.exited.done():
                request.exited.set_result(None)
        self.pending.clear()


class Zygote:
    """The daemon's handle on its zygote: started lazily, replaced when dead, stopped by :meth:`close`.

    One per daemon (``Runner`` and ``ProbeContext`` carry it to :func:`run_isolated`).
    """

    def __init__(
        self,
        *,
        logger: Any = None,
        preload: Sequence[str] = PRELOAD,
        max_forks: int = MAX_FORKS,
        max_age_s: float = MAX_AGE_S,
        fork_timeout_s: float = FORK_TIMEOUT_S,
    ) -> None:
        self._log = logger if logger is not None else structlog.get_logger("synthmon")
        self._preload = tuple(preload)
        self._max_forks = max_forks
        self._max_age_s = max_age_s
        self._fork_timeout_s = fork_timeout_s
        self._current: _Instance | None = None
        self._booting: asyncio.Task[_Instance | None] | None = None
        self._retired: list[_Instance] = []
        self._failed_at: float | None = None
        self._warned = False
        self._ids = itertools.count(1)

    @property
    def pid(self) -> int | None:
        """The running zygote's pid (None when there is none)."""
        current = self._current
        return current.proc.pid if current is not None and current.alive else None

    async def spawn(self, env: dict[str, str], wait_s: float) -> ForkedChild | None:
        """A child forked with environment ``env``; waits at most ``wait_s`` for a zygote to start.

        None (logged once per spell of trouble) when this run must use a fresh interpreter.
        """
        try:
            instance = await self._ready(wait_s)
            if _startup_vars(env) != _startup_vars(instance.boot_env):
                raise ZygoteUnavailable("the run's PYTHON* variables differ from the zygote's")
            child = await self._fork(instance, env)
        except _NotReadyYet as exc:
            self._log.info("isolation.zygote_not_ready", reason=str(exc), fallback="fresh interpreter")
            return None
        except ZygoteUnavailable as exc:
            if not self._warned:
                self._warned = True
                self._log.warning(
                    "isolation.zygote_unavailable", reason=str(exc), fallback="fresh interpreter"
                )
            return None
        self._warned = False
        return child

    async def close(self) -> None:
        """Stop every zygote this handle started; a later :meth:`spawn` starts a new one."""
        if self._booting is not None:
            self._booting.cancel()
            with contextlib.suppress(BaseException):
                await self._booting
            self._booting = None
        instances = [*self._retired, *([self._current] if self._current else [])]
        self._current, self._retired = None, []
        await asyncio.gather(*(self._stop(i) for i in instances))

    # --- daemon side ------------------------------------------------------------------------------

    async def _ready(self, wait_s: float) -> _Instance:
        current = self._current
        if current is not None and current.alive:
            age = time.monotonic() - current.started
            if current.forks < self._max_forks and age < self._max_age_s:
                return current
            self._log.info("isolation.zygote_recycled", pid=current.proc.pid, forks=current.forks)
            self._retire(current)
        elif current is not None:
            self._current = None
            self._log.warning(
                "isolation.zygote_lost", pid=current.proc.pid, returncode=current.proc.returncode
            )
            await self._stop(current)
        self._current = None
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_AFTER_S:
            raise ZygoteUnavailable("the zygote failed to start recently")
        if self._booting is None:
            self._booting = asyncio.ensure_future(self._boot())
        try:
            instance = await asyncio.wait_for(asyncio.shield(self._booting), timeout=max(0.1, wait_s))
        except TimeoutError:
            raise _NotReadyYet(f"the zygote was not ready within {wait_s:.1f}s") from None
        if instance is None:
            raise ZygoteUnavailable("the zygote could not start")
        return instance

    async def _boot(self) -> _Instance | None:
        """Start a zygote and wait for its hello; None (and the failure remembered) when it fails."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = child_environment()
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "probes.support.zygote",
                str(theirs.fileno()),
                *self._preload,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # terminal signals reach the daemon, which stops it in order
            )
        except OSError as exc:  # no process to spare (EAGAIN, EMFILE...): fresh interpreters fail too
            ours.close()
            self._booting = None
            self._failed_at = time.monotonic()
            self._log.warning("isolation.zygote_failed", reason=f"cannot start: {exc}")
            return None
        finally:
            theirs.close()
        ours.setblocking(False)
        instance = _Instance(proc, ours, env, time.monotonic())
        recv = asyncio.get_running_loop().sock_recv(ours, _MSG_MAX)
        try:
            hello = json.loads(await asyncio.wait_for(recv, BOOT_TIMEOUT_S) or b"{}")
        except (TimeoutError, ValueError) as exc:
            hello = {"reason": f"no hello ({type(exc).__name__})"}
        except BaseException:
            await self._stop(instance)  # cancelled (the daemon stops): no zygote left behind
            raise
        finally:
            self._booting = None
        if not hello.get("ready"):
            self._failed_at = time.monotonic()
            self._log.warning(
                "isolation.zygote_failed", reason=str(hello.get("reason", "exited while starting"))
            )
            await self._stop(instance)
            return None
        self._failed_at = None
        instance.reader = asyncio.ensure_future(self._read(instance))
        self._current = instance
        self._log.info("isolation.zygote_started", pid=proc.pid, preload=list(self._preload))
        return instance

    async def _fork(self, instance: _Instance, env: dict[str, str]) -> ForkedChild:
        rid = next(self._ids)
        loop = asyncio.get_running_loop()
        request = _Request(loop.create_future(), loop.create_future())
        (stdin_r, stdin_w), (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe(), os.pipe()
        ours = (stdin_w, out_r, err_r)
        instance.pending[rid] = request
        instance.forks += 1
        try:
            socket.send_fds(
                instance.sock, [json.dumps({"id": rid, "env": env}).encode()], [stdin_r, out_w, err_w]
            )
            pid = await asyncio.wait_for(asyncio.shield(request.pid), self._fork_timeout_s)
        except TimeoutError:
            request.abandoned = True
            for fd in ours:
                os.close(fd)
            self._log.warning("isolation.zygote_hung", pid=instance.proc.pid)
            await self._stop(instance)
            raise ZygoteUnavailable("the zygote did not answer a fork request") from None
        except BaseException as exc:
            request.abandoned = True
            for fd in ours:
                os.close(fd)
            if isinstance(exc, OSError):
                raise ZygoteUnavailable(f"cannot reach the zygote: {exc}") from None
            raise
        finally:
            for fd in (stdin_r, out_w, err_w):
                os.close(fd)
        return ForkedChild(pid, ours, request.exited)

    async def _read(self, instance: _Instance) -> None:
        """Route the zygote's messages to the waiting runs until its socket closes."""
        loop = asyncio.get_running_loop()
        try:
            while message := await loop.sock_recv(instance.sock, _MSG_MAX):
                event = json.loads(message)
                request = instance.pending.get(int(event["id"]))
                if request is None:
                    continue
                if "pid" in event:
                    if request.abandoned:  # the run gave up waiting: the child must not run alone
                        kill_group(int(event["pid"]))
                    elif not request.pid.done():
                        request.pid.set_result(int(event["pid"]))
                else:
                    del instance.pending[int(event["id"])]
                    if not request.pid.done():
                        request.pid.set_exception(ZygoteUnavailable(str(event.get("error"))))
                    if not request.exited.done():
                        request.exited.set_result(event.get("exit"))
                    if instance.retiring and not instance.pending:
                        instance.shut()
        except OSError:
            pass  # a reset socket is a dead zygote, like EOF
        finally:
            instance.shut()
            instance.sock.close()

    def _retire(self, instance: _Instance) -> None:
        """No new children; the socket shuts when the last running one has been reaped."""
        instance.retiring = True
        if not instance.pending:
            instance.shut()
        self._retired = [*(i for i in self._retired if i.proc.returncode is None), instance]

    async def _stop(self, instance: _Instance) -> None:
        """Close its socket and reap it; SIGKILL when it does not exit on EOF at once."""
        instance.shut()
        if instance.reader is None:
            instance.sock.close()
        try:
            await asyncio.wait_for(instance.proc.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                instance.proc.kill()
            await instance.proc.wait()
        if instance.reader is not None:
            await asyncio.gather(instance.reader, return_exceptions=True)


# --- zygote side --------------------------------------------------------------------------------------


def _send(sock: socket.socket, **event: Any) -> None:
    with contextlib.suppress(OSError):  # the daemon is gone: the loop sees EOF next
        sock.send(json.dumps(event).encode())


def serve(sock: socket.socket, preload: Sequence[str]) -> int:
    """Import ``preload``, check for threads, say hello, then fork on request until EOF."""
    os.environ.update(FORK_SAFE_ENV)
    try:
        for name in preload:
            importlib.import_module(name)
    except BaseException as exc:
        _send(sock, ready=False, reason=f"importing: {type(exc).__name__}: {exc}")
        return 1
    if threading.active_count() != 1:
        names = [t.name for t in threading.enumerate()]
        _send(sock, ready=False, reason=f"threads after imports, forking is unsafe: {names}")
        return 1
    gc.freeze()  # children's collections leave the imported objects (and their pages) alone
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    ids: dict[int, int] = {}
    _send(sock, ready=True, pid=os.getpid())
    while True:
        readable, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
            while ids:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                _send(sock, id=ids.pop(pid, 0), exit=os.waitstatus_to_exitcode(status))
        if sock.fileno() in readable:
            message, fds, _, _ = socket.recv_fds(sock, _MSG_MAX, 3)
            if not message:
                return 0  # the daemon closed its end (or died)
            request = json.loads(message)
            try:
                pid = _fork_child(request["env"], fds, close=(sock.fileno(), wake_r, wake_w))
            except OSError as exc:
                _send(sock, id=request["id"], error=f"fork: {exc}")
                continue
            finally:
                for fd in fds:
                    os.close(fd)
            ids[pid] = request["id"]
            _send(sock, id=request["id"], pid=pid)


def _fork_child(env: dict[str, str], fds: list[int], close: tuple[int, ...]) -> int:
    """Fork; returns the child's pid once it leads its own session (so killpg reaches it)."""
    ready_r, ready_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            os.close(ready_w)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (*close, ready_r):
                os.close(fd)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in fds:
                os.close(fd)
            os.environ.clear()
            os.environ.update(env)
            code = run_child()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    os.close(ready_w)
    os.read(ready_r, 1)  # EOF once the child has called setsid (or died)
    os.close(ready_r)
    return pid


if __name__ == "__main__":
    sys.exit(serve(socket.socket(fileno=int(sys.argv[1])), sys.argv[2:]))
