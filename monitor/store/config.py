"""The ``store:`` section of the config: where history, incident state and the outbox live.

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

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.store.url import NotAUrlError, parse_store_url
from probes.base import PositiveDuration

#: The database backends the SQL store speaks (any driver: ``postgresql+psycopg``, ...).
BACKENDS = ("sqlite", "postgresql")


class StoreConfig(BaseModel):
    """Where history, incident state and the outbox live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "sqlite:///var/synthmon.db"
    retention_days: int = Field(default=30, ge=1)
    rollup_retention_days: int = Field(default=400, ge=1)
    buffer_size: int = Field(default=10_000, ge=1)
    prune_interval: PositiveDuration = 3600.0

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        # Checked here so a typo stops start-up with the field path, not at the first write.
        # The messages never repeat the URL: it may carry a password.
        try:
            backend = parse_store_url(value).backend
        except NotAUrlError:
            raise ValueError(
                "not a database URL (expected e.g. sqlite:///var/synthmon.db or "
                "postgresql+psycopg://user:password@host/db)"
            ) from None
        if backend not in BACKENDS:
            raise ValueError(f"unsupported database {backend!r}; use one of: {', '.join(BACKENDS)}")
        return value

    @model_validator(mode="after")
    def _rollups_outlive_runs(self) -> StoreConfig:
        # Rollups are computed from raw runs; keeping them for less time than the runs is a typo.
        if self.rollup_retention_days < self.retention_days:
            raise ValueError(
                f"rollup_retention_days ({self.rollup_retention_days}) must be at least "
                f"retention_days ({self.retention_days})"
            )
        return self

    def passwords(self) -> list[str]:
        """The URL's password as written (percent-encoded) and decoded, for the log masker."""
        from sqlalchemy.engine import make_url  # the daemon's and PostgreSQL's: SQLAlchemy is loaded

        decoded = make_url(self.url).password
        written = urlsplit(self.url).password
        return sorted({p for p in (decoded, written) if p})

    def safe_url(self) -> str:
        """The URL with any password masked: the only form that may be logged or shown."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)
