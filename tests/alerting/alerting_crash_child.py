"""Crash-test child: queue an incident's opening event, then die by SIGKILL before any send."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta

from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.sink import IncidentSink
from monitor.store.metrics import StoreMetrics
from probes.base import Status

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from history.history_helpers import T0, FakeClock, FullStore, result


async def main(url: str) -> None:
    store = FullStore.open(url)
    registry = CollectorRegistry()
    clock = FakeClock(T0)
    config = AlertingConfig.model_validate({"slack": {"webhook_url": "http://127.0.0.1:9/x"}})
    sink = IncidentSink(store, config, {}, clock, AlertingMetrics(registry), StoreMetrics(registry))
    for i in range(2):
        await sink.handle(result("artifact_roundtrip", Status.FAIL, T0 + timedelta(minutes=i)))
        assert await sink.flush(30)  # handle only queues: evaluate (and queue the event) now
        clock.advance(60)
    print("queued", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
