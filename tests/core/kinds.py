"""Probe kinds that misbehave on purpose, for the runner, scheduler and daemon tests.

Tests register them with ``monkeypatch.setitem(PROBE_KINDS, ...)``; isolated ones are imported by
the child process through the runner's ``kind_ref``, so they must live in an importable module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

from probes.base import ProbeContext, ProbeOptions, Status, StepResult


class TestOptions(ProbeOptions):
    """Knobs shared by the test kinds."""

    __test__ = False  # not a pytest test class

    sleep_s: float = 0.0
    pid_file: str | None = None
    message: str = ""
    concurrency_file: str | None = None


class HangProbe:
    """Awaits forever (a platform call that never returns)."""

    Options: ClassVar[type[ProbeOptions]] = TestOptions
    isolated: ClassVar[bool] = False

    def __init__(self, name: str, options: TestOptions) -> None:
        self.name = name
        self.options = options

    async def run(self, ctx: ProbeContext) -> list[StepResult]:
        """Never finishes on its own."""
        await asyncio.Event().wait()
        return []


class BoomProbe(HangProbe):
    """Raises, with ``message`` (which may contain a secret) in the exception text."""

    async def run(self, ctx: ProbeContext) -> list[StepResult]:
        """Logs the secret (the masker must catch it) and raises."""
        ctx.logger.info("about.to.fail", detail=self.options.message)
        raise RuntimeError(self.options.message)


class SleepProbe(HangProbe):
    """Passes after ``sleep_s`` seconds; tracks how many of its runs overlap in ``concurrency_file``."""

    active: ClassVar[dict[str, int]] = {}
    max_active: ClassVar[dict[str, int]] = {}
    starts: ClassVar[dict[str, list[float]]] = {}

    async def run(self, ctx: ProbeContext) -> list[StepResult]:
        """One PASS step after sleeping."""
        cls = type(self)
        cls.starts.setdefault(self.name, []).append(time.monotonic())
        cls.active[self.name] = cls.active.get(self.name, 0) + 1
        cls.max_active[self.name] = max(cls.max_active.get(self.name, 0), cls.active[self.name])
        try:
            await asyncio.sleep(self.options.sleep_s)
        finally:
            cls.active[self.name] -= 1
        return [StepResult(name="sleep", status=Status.PASS, duration_s=self.options.sleep_s)]


class BlockingProbe(HangProbe):
    """Blocks the event loop for ``sleep_s`` seconds, as a client stuck in a C call would."""

    async def run(self, ctx: ProbeContext) -> list[StepResult]:
        """One PASS step, after holding the whole event loop."""
        time.sleep(self.options.sleep_s)  # noqa: ASYNC251 - deliberately blocking the loop
        return [StepResult(name="block", status=Status.PASS, duration_s=self.options.sleep_s)]


class IsolatedHangProbe(HangProbe):
    """Runs in a subprocess, starts a grandchild, writes both pids, then blocks (no await)."""

    isolated: ClassVar[bool] = True

    async def run(self, ctx: ProbeContext) -> list[StepResult]:
        """Blocks the child's event loop for good: only a kill ends it."""
        # Blocking calls on purpose (ASYNC220/240): this stands for a stuck synchronous client.
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # noqa: ASYNC220
        assert self.options.pid_file
        Path(self.options.pid_file).write_text(f"{os.getpid()} {helper.pid}")  # noqa: ASYNC240
        time.sleep(600)  # noqa: ASYNC251 - deliberately blocking, as a stuck C client would
        return []


class IsolatedEchoProbe(HangProbe):
    """Runs in a subprocess and reports which secret it received (masked by the parent)."""

    isolated: ClassVar[bool] = True

    async def run(self, ctx: ProbeContext) -> list[StepResult]:
        """One PASS step whose message holds the secret and a measurement; prints to stderr too."""
        secret = ctx.secrets.get("api_key")
        print(f"child stderr mentions {secret}", file=sys.stderr)
        return [
            StepResult(
                name="echo",
                status=Status.FAIL,
                message=f"saw key {secret} in pid {os.getpid()}",
                http_status=500,
                measurements={"answer": 42.0},
            )
        ]


class StdlibLogProbe(HangProbe):
    """Passes after a library-style stdlib warning carrying ``message`` (which may hold a secret)."""

    async def run(self, ctx: ProbeContext) -> list[StepResult]:
        """Logs through ``logging`` like httpx or mlflow would, then passes."""
        logging.getLogger("some.library").warning("retrying with %s", self.options.message)
        return [StepResult(name="log", status=Status.PASS)]
