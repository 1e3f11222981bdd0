"""The ``alerting:`` section of the config (owned by the alerting package)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AlertingConfig(BaseModel):
    """Incident rules and notification channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)
