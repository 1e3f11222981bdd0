"""What one probe run costs the daemon, beyond the HTTP exchange itself.

Against a loopback HTTP server (so the network is nearly free and overhead shows), for N runs:

- ``bare``       one GET with a fresh ``httpx.AsyncClient`` (what any per-run client costs);
- ``runner``     ``Runner.run`` of an ``http`` probe (client, context, step, diagnosis, masking, log);
- ``record``     ``Metrics.record`` of that result;
- ``isolated``   a subprocess run (the price of whole-probe isolation), fewer iterations.

Compare the ratios within one run of this script; absolute numbers depend on the machine.
Usage: ``.venv/bin/python benchmarks/core_overhead.py [N]``
"""

from __future__ import annotations

import asyncio
import io
import statistics
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.config import parse_config
from monitor.logs import make_logger
from monitor.metrics import Metrics
from monitor.runner import Runner, default_client_factory
from probes.base import SystemClock
from probes.support.masking import SecretMasker
from tests.core.target import Target


def _ms(samples: list[float]) -> str:
    p90 = sorted(samples)[int(len(samples) * 0.9)]
    return f"{statistics.median(samples) * 1000:.3f} ms (p90 {p90 * 1000:.3f})"


async def main(n: int) -> None:
    """Measure and print a Markdown table."""
    target = Target().start()
    config = parse_config(
        f"environment: bench\nprobes:\n  - name: web\n    kind: http\n    timeout: 5s\n"
        f"    options: {{url: '{target.url}/health', json_equals: {{status: healthy}}}}\n",
        env={},
    )
    masker = SecretMasker(["hk_test_" + "b" * 32])
    logger = make_logger(masker, stream=io.StringIO(), json=True)
    runner = Runner(config, clock=SystemClock(), logger=logger, masker=masker)
    metrics = Metrics(CollectorRegistry())
    make_client = default_client_factory()

    bare: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with make_client(5.0) as client:
            (await client.get(target.url + "/health")).raise_for_status()
        bare.append(time.perf_counter() - t0)

    runs: list[float] = []
    records: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = await runner.run("web")
        runs.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        metrics.record(result)
        records.append(time.perf_counter() - t1)
        assert result.status.ok, result

    from probes.registry import PROBE_KINDS
    from tests.core.kinds import IsolatedEchoProbe  # the isolation path, with a trivial probe

    PROBE_KINDS["bench_iso"] = IsolatedEchoProbe
    iso_config = parse_config(
        "environment: bench\nsecrets: {api_key: hk_test_" + "b" * 32 + "}\n"
        "probes:\n  - {name: iso, kind: bench_iso, timeout: 20s}\n",
        env={},
    )
    iso_runner = Runner(iso_config, clock=SystemClock(), logger=logger, masker=masker)
    isolated: list[float] = []
    for _ in range(max(3, n // 20)):
        t0 = time.perf_counter()
        await iso_runner.run("iso")
        isolated.append(time.perf_counter() - t0)
    target.stop()

    base = statistics.median(bare)
    print(f"| measurement (N={n}, loopback) | median | vs bare GET |")
    print("|---|---|---|")
    print(f"| bare GET, fresh client | {_ms(bare)} | 1.00 |")
    print(f"| Runner.run (http probe) | {_ms(runs)} | {statistics.median(runs) / base:.2f} |")
    print(f"| Metrics.record | {_ms(records)} | {statistics.median(records) / base:.3f} |")
    print(f"| isolated run (subprocess) | {_ms(isolated)} | {statistics.median(isolated) / base:.1f} |")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
