"""The ``store:`` section of the config (owned by the history package)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StoreConfig(BaseModel):
    """Where history, incident state and the outbox live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "sqlite:///var/synthmon.db"
    retention_days: int = 30
