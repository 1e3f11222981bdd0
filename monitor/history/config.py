"""The ``store:`` section of the config (owned by the history package).

```yaml
store:
  url: ${SYNTHMON_STORE_URL:-sqlite:///var/synthmon.db}   # or postgresql+psycopg://user:pw@host/db
  retention_days: 30          # raw runs and steps
  rollup_retention_days: 400  # hourly rollups per probe and step
  buffer_size: 10000          # results held in memory while the database is unreachable
  prune_interval: 1h          # how often the retention job runs
```
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlalchemy.engine import make_url

from monitor.history.timeutil import parse_duration

#: A duration field: a number of seconds or a string such as ``"30m"``.
Duration = Annotated[float, BeforeValidator(parse_duration)]


class StoreConfig(BaseModel):
    """Where history, incident state and the outbox live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "sqlite:///var/synthmon.db"
    retention_days: int = Field(default=30, ge=1)
    rollup_retention_days: int = Field(default=400, ge=1)
    buffer_size: int = Field(default=10_000, ge=1)
    prune_interval: Duration = 3600.0

    def safe_url(self) -> str:
        """The URL with any password masked: the only form that may be logged or shown."""
        return make_url(self.url).render_as_string(hide_password=True)
