"""The ``alerting:`` section of the config (owned by the alerting package).

```yaml
alerting:
  rules:                          # defaults for every probe
    failure_threshold: 2          # consecutive failing runs that open an incident
    success_threshold: 2          # consecutive good runs that resolve it
    reminder_interval: 1h         # 0 = no reminders
    alert_on_degraded: false      # DEGRADED counts as failing when true
    alert_on_error: false         # ERROR (the monitor could not run the check) counts as failing when true
    alert_on_latency_regression: true  # a DEGRADED run with cause latency_regression counts as failing
  probes:                         # per-probe overrides of any rule field
    registration: {failure_threshold: 1}
    "slo:auth": {failure_threshold: 3}   # an SLO's burn incidents: its pseudo-probe slo:<name>
  maintenance:                    # weekly windows: notifications stop, probing does not
    - name: sunday-patching
      probes: [registration]      # empty or absent = every probe
      days: [sun]
      start: "02:00"
      duration: 2h
      timezone: Europe/Berlin
  slack:
    webhook_url: ${SLACK_WEBHOOK_URL:-}
    bot_token: ${SLACK_BOT_TOKEN:-}
    channel: ${SLACK_CHANNEL:-}
    api_url: ${SLACK_API_URL:-}
  log: {enabled: auto}            # auto = on when Slack is not configured
  links:
    status_page_url: ""
    grafana_url: ""
  correlation:                    # one platform incident (one thread) per outage, see below
    by_cause: true                # same specific diagnosed cause within the window joins too
    window: 15m
  quorum:                         # replicas in several locations: how many must see a failure
    min_locations: 2              # 1 when only one location is live
    window: 5m                    # each location's last failing run must be this recent (at least
                                  # the probe's interval + jitter + timeout)
  outbox:
    dispatch_interval: 5s
    backoff_base: 5s
    backoff_max: 5m
    give_up_after: 24h
    lease: 2m
```
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from probes.base import Duration

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class IncidentRule(BaseModel):
    """When a probe's incident opens, resolves and reminds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_threshold: int = Field(default=2, ge=1)
    success_threshold: int = Field(default=2, ge=1)
    reminder_interval: Duration = 3600.0
    alert_on_degraded: bool = False
    alert_on_error: bool = False
    #: A DEGRADED run whose cause is ``latency_regression`` (monitor.baselines) counts as failing.
    alert_on_latency_regression: bool = True


class RuleOverride(BaseModel):
    """Per-probe changes to the default :class:`IncidentRule` (unset fields inherit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_threshold: int | None = Field(default=None, ge=1)
    success_threshold: int | None = Field(default=None, ge=1)
    reminder_interval: Duration | None = None
    alert_on_degraded: bool | None = None
    alert_on_error: bool | None = None
    alert_on_latency_regression: bool | None = None


class MaintenanceWindow(BaseModel):
    """A weekly window, in a time zone, during which notifications for some probes are held."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    probes: tuple[str, ...] = ()
    days: tuple[Weekday, ...] = WEEKDAYS
    start: time
    duration: Duration
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: float) -> float:
        # A window longer than a week would overlap itself; a silence is the tool for that.
        if not 0 < value <= 7 * 86400:
            raise ValueError("duration must be > 0 and at most 7d")
        return value


def _empty_to_none(value: object) -> object:
    # config.yaml interpolates ${SLACK_WEBHOOK_URL:-}: an unset variable arrives as "".
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, SecretStr) and not value.get_secret_value().strip():
        return None
    return value


class SlackConfig(BaseModel):
    """Slack: an incoming webhook, or a bot token and a channel (threads and edits need the token)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_url: SecretStr | None = None
    bot_token: SecretStr | None = None
    channel: str | None = None
    api_url: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("webhook_url", "bot_token", "channel", "api_url", mode="before")
    @classmethod
    def _blank(cls, value: object) -> object:
        return _empty_to_none(value)

    @field_validator("webhook_url", "api_url")
    @classmethod
    def _http_url(cls, value: SecretStr | str | None) -> SecretStr | str | None:
        # A typo here would only show at the first page, hours later; the message never repeats
        # the value (a webhook URL is a credential).
        url = value.get_secret_value() if isinstance(value, SecretStr) else value
        if url is not None:
            parts = urlsplit(url.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be an absolute http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _token_needs_channel(self) -> SlackConfig:
        if self.bot_token is not None and not self.channel:
            raise ValueError("slack.bot_token needs slack.channel (SLACK_CHANNEL)")
        return self

    @property
    def enabled(self) -> bool:
        """True when either a webhook or a bot token is configured."""
        return self.webhook_url is not None or self.bot_token is not None


class LogChannelConfig(BaseModel):
    """The ``log`` notifier: events as structured log lines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | Literal["auto"] = "auto"


class LinksConfig(BaseModel):
    """Links put into every message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status_page_url: str | None = None
    grafana_url: str | None = None

    @field_validator("status_page_url", "grafana_url", mode="before")
    @classmethod
    def _blank(cls, value: object) -> object:
        return _empty_to_none(value)


class OutboxConfig(BaseModel):
    """How the dispatcher retries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Must be > 0: a zero interval would make the dispatcher spin.
    dispatch_interval: Annotated[Duration, Field(gt=0)] = 5.0
    backoff_base: Duration = 5.0
    backoff_max: Duration = 300.0
    give_up_after: Duration = 86400.0
    lease: Duration = 120.0
    batch: int = Field(default=50, ge=1)


class CorrelationConfig(BaseModel):
    """Which failures belong to one platform incident (one Slack thread).

    A failing probe joins an open incident when a probe it depends on (``depends_on``, followed
    transitively) or a probe that depends on it is in that incident. Beyond the dependency chain,
    with ``by_cause`` a failure whose diagnosed cause is the same specific cause as an incident
    member's (not a generic one such as ``timeout``) joins it when the two began within ``window``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    by_cause: bool = True
    window: Annotated[Duration, Field(gt=0)] = 900.0


class QuorumConfig(BaseModel):
    """How many locations must see a failure for it to page (see :mod:`monitor.alerting.quorum`).

    With replicas in several locations, a probe's incident opens only while at least
    ``min(min_locations, live locations)`` locations have seen it fail within ``window``; one
    location alone (its own network) is shown per location but never pages. With one location
    the rule is 1 of 1: exactly the behaviour without locations.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_locations: int = Field(default=2, ge=1)
    window: Annotated[Duration, Field(gt=0)] = 300.0


class AlertingConfig(BaseModel):
    """Incident rules and notification channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: IncidentRule = IncidentRule()
    probes: dict[str, RuleOverride] = Field(default_factory=dict)
    maintenance: tuple[MaintenanceWindow, ...] = ()
    slack: SlackConfig = SlackConfig()
    log: LogChannelConfig = LogChannelConfig()
    links: LinksConfig = LinksConfig()
    outbox: OutboxConfig = OutboxConfig()
    correlation: CorrelationConfig = CorrelationConfig()
    quorum: QuorumConfig = QuorumConfig()

    def rule_for(self, probe: str) -> IncidentRule:
        """The effective rule of ``probe``: the defaults with its overrides applied."""
        override = self.probes.get(probe)
        if override is None:
            return self.rules
        changes = override.model_dump(exclude_none=True)
        return self.rules.model_copy(update=changes)

    def channels(self) -> tuple[str, ...]:
        """The channel names events are queued for, in a stable order."""
        out: list[str] = []
        if self.slack.enabled:
            out.append("slack")
        if self.log.enabled is True or (self.log.enabled == "auto" and not self.slack.enabled):
            out.append("log")
        return tuple(out)
