"""The ``baselines:`` section of the config (owned by the baselines package).

```yaml
baselines:
  enabled: true
  window: 7d            # history a baseline is computed over
  percentile: 0.95      # the baseline is this percentile of the window's latencies
  factor: 3.0           # a run slower than factor x baseline is slow
  consecutive: 3        # slow runs in a row that make a latency regression
  min_runs: 100         # no baseline (nothing judged) below this many runs in the window ...
  min_span: 24h         # ... or this much history
  refresh: 10m          # how often baselines are recomputed from the rollups
  floor: 50ms           # a baseline under this is judged only when the run is also ...
  min_slowdown: 250ms   # ... at least this much slower than it (loopback-fast steps never flap)
```
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from probes.base import Duration, PositiveDuration


class BaselinesConfig(BaseModel):
    """When a run counts as a latency regression (see the README, "Latency baselines")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    window: PositiveDuration = 7 * 86400.0
    percentile: float = Field(default=0.95, gt=0, lt=1)
    factor: float = Field(default=3.0, gt=1)
    consecutive: int = Field(default=3, ge=1)
    min_runs: int = Field(default=100, ge=1)
    min_span: Duration = 86400.0
    #: Must be > 0: a zero interval would recompute on every run.
    refresh: Annotated[PositiveDuration, Field(ge=1)] = 600.0
    floor: Duration = 0.05
    min_slowdown: Duration = 0.25

    @model_validator(mode="after")
    def _span_fits_window(self) -> BaselinesConfig:
        if self.min_span > self.window:
            raise ValueError("min_span must not be longer than window (no history could ever be enough)")
        return self
