"""Slack: Block Kit messages (pure :func:`build_message`) and the notifier (slack-sdk).

Two modes:

- **incoming webhook** (``SLACK_WEBHOOK_URL``): every event is a standalone message (webhooks cannot
  thread or edit);
- **bot token** (``SLACK_BOT_TOKEN`` + ``SLACK_CHANNEL``): an incident's first event is the thread
  root; updates, reminders, joined probes and the resolution are replies; on resolution the root is
  edited with ``chat.update`` to show the incident resolved.

``SLACK_API_URL`` replaces ``https://slack.com/api/`` (tests and the sandbox point it at a fake).
slack-sdk's retry handlers absorb 429 (honouring ``Retry-After``) and connection errors; what remains
becomes a :class:`TransportError`, permanent for configuration errors (bad webhook or token, unknown
channel). Error texts are built from status codes and Slack error codes only: the webhook URL and the
token are never part of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from monitor.alerting.base import Event, EventKind, TransportError
from monitor.alerting.config import LinksConfig, SlackConfig

#: Slack error codes that no retry can fix: configuration has to change.
PERMANENT_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "channel_is_archived",
        "invalid_token",
        "no_service",
        "no_team",
        "team_disabled",
        "invalid_payload",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "msg_too_long",
        "restricted_action",
        "action_prohibited",
        "posting_to_general_channel_denied",
    }
)

_TITLE = {
    EventKind.OPENED: (":red_circle:", "failing"),
    EventKind.JOINED: (":large_orange_circle:", "failing too (joined this incident)"),
    EventKind.UPDATED: (":large_yellow_circle:", "still failing, and the failure changed"),
    EventKind.REMINDER: (":bell:", "still failing"),
    EventKind.RESOLVED: (":large_green_circle:", "resolved"),
}


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """What is posted: the notification/fallback ``text`` and the Block Kit ``blocks``."""

    text: str
    blocks: list[dict[str, Any]]


def _esc(text: str) -> str:
    # Slack mrkdwn control characters; everything else is literal.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(at: datetime) -> str:
    """A Slack date token (rendered in the reader's time zone) with a UTC fallback."""
    epoch = int(at.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} {{time}}|{at.strftime('%Y-%m-%d %H:%M UTC')}>"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def build_message(event: Event, links: LinksConfig | None = None, *, root: bool = False) -> SlackMessage:
    """The Slack message for ``event``. Pure: same input, same output (golden-tested).

    ``root`` renders the thread root's edited form on resolution ("RESOLVED" banner).
    """
    links = links or LinksConfig()
    emoji, verb = _TITLE[event.kind]
    env = f"[{event.environment}] " if event.environment else ""
    if root:
        lasted = _duration((event.at - event.since).total_seconds())
        title = f"{emoji} {env}{event.probe}: resolved after {lasted}"
    else:
        title = f"{emoji} {env}{event.probe} {verb}"
    failing = event.kind is not EventKind.RESOLVED
    summary = f"{event.probe} {event.old_status} → {event.new_status}"
    if failing and event.step:
        summary += f" at step {event.step}"
        if event.http_status is not None:
            summary += f" (HTTP {event.http_status})"
    if failing and event.cause:
        summary += f": {event.cause}"
    text = f"{env}{summary}"

    fields = [
        f"*Environment*\n{_esc(event.environment or '-')}",
        f"*Probe*\n{_esc(event.probe)}",
        f"*Change*\n{event.old_status} → {event.new_status}",
        f"*Since*\n{_when(event.since)}",
    ]
    if failing:
        fields.append(f"*Failing step*\n{_esc(event.step or '-')}")
        status = str(event.http_status) if event.http_status is not None else "-"
        fields.append(
            f"*HTTP status*\n{status}" + (f" ({_esc(event.error_class)})" if event.error_class else "")
        )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if failing and (event.cause or event.hint or event.action):
        lines = []
        if event.cause:
            lines.append(f"*Likely cause:* {_esc(event.cause)}")
        if event.hint:
            lines.append(f"*Hint:* {_esc(event.hint)}")
        if event.action:
            lines.append(f"*Action:* {_esc(event.action)}")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    if failing and event.message:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{_esc(event.message)}```"}})
    if event.kind is EventKind.JOINED:
        note = f"Depends on *{_esc(event.incident_probe)}*, whose incident this is: no separate page."
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    context = [f"run `{_esc(event.run_id)}`", f"incident `{_esc(event.incident_id)}`"]
    if links.status_page_url:
        context.append(f"<{links.status_page_url}|status page>")
    if links.grafana_url:
        context.append(f"<{links.grafana_url}|Grafana>")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    return SlackMessage(text=text, blocks=blocks)


def _quiet_logger() -> logging.Logger:
    # slack-sdk logs request URLs at DEBUG; a webhook URL is a secret. An unattached logger with a
    # NullHandler keeps them out of every log no matter how the root logger is configured.
    logger = logging.Logger("synthmon.slack_sdk", level=logging.WARNING)
    logger.addHandler(logging.NullHandler())
    return logger


def _api_error(exc: SlackApiError, method: str) -> TransportError:
    status = getattr(exc.response, "status_code", 0) or 0
    code = ""
    try:
        code = str(exc.response.get("error") or "")
    except (AttributeError, TypeError, ValueError):  # a non-JSON body (e.g. a proxy's 502 page)
        code = ""
    permanent = code in PERMANENT_ERRORS or (400 <= status < 500 and status != 429 and not code)
    if code == "ratelimited" or status == 429 or status >= 500:
        permanent = False
    return TransportError(f"slack {method}: HTTP {status} {code or 'error'}".strip(), permanent=permanent)


class SlackNotifier:
    """Sends events to Slack (see module docstring for the two modes)."""

    name = "slack"

    def __init__(self, config: SlackConfig, links: LinksConfig | None = None, *, retries: int = 2) -> None:
        if not config.enabled:
            raise ValueError("SlackNotifier needs slack.webhook_url or slack.bot_token")
        self._links = links or LinksConfig()
        self._channel = config.channel or ""
        handlers = [
            RateLimitErrorRetryHandler(max_retry_count=retries),
            ConnectionErrorRetryHandler(max_retry_count=retries),
        ]
        timeout = int(max(1, config.timeout_s))
        self._web: WebClient | None = None
        self._webhook: WebhookClient | None = None
        if config.bot_token is not None:
            base = config.api_url or "https://slack.com/api/"
            self._web = WebClient(
                token=config.bot_token.get_secret_value(),
                base_url=base if base.endswith("/") else base + "/",
                timeout=timeout,
                retry_handlers=handlers,
                logger=_quiet_logger(),
            )
        else:
            assert config.webhook_url is not None  # enabled and no token: the webhook is set
            self._webhook = WebhookClient(
                url=config.webhook_url.get_secret_value(),
                timeout=timeout,
                retry_handlers=handlers,
                logger=_quiet_logger(),
            )

    def send(self, event: Event, thread: str | None) -> str | None:
        """Deliver ``event``; returns ``"channel_id:ts"`` of a new thread root, else None."""
        message = build_message(event, self._links)
        try:
            if self._webhook is not None:
                self._send_webhook(message)
                return None
            return self._send_web(event, message, thread)
        except TransportError:
            raise
        except SlackApiError as exc:
            raise _api_error(exc, "api") from None
        except (SlackClientError, OSError) as exc:
            # Connection refused / reset / timeout after the retry handler gave up: try again later.
            raise TransportError(f"slack: {type(exc).__name__}") from None

    def _send_webhook(self, message: SlackMessage) -> None:
        assert self._webhook is not None
        resp = self._webhook.send(text=message.text, blocks=message.blocks)
        if resp.status_code == 200:
            return
        code = (resp.body or "").strip()[:60]
        permanent = code in PERMANENT_ERRORS or (400 <= resp.status_code < 500 and resp.status_code != 429)
        raise TransportError(f"slack webhook: HTTP {resp.status_code} {code}".strip(), permanent=permanent)

    def _send_web(self, event: Event, message: SlackMessage, thread: str | None) -> str | None:
        assert self._web is not None
        if thread is None:
            try:
                resp = self._web.chat_postMessage(
                    channel=self._channel, text=message.text, blocks=message.blocks
                )
            except SlackApiError as exc:
                raise _api_error(exc, "chat.postMessage") from None
            return f"{resp['channel']}:{resp['ts']}"
        channel_id, _, ts = thread.partition(":")
        if event.kind is EventKind.RESOLVED and event.owns_thread:
            # Edit the root first: chat.update is idempotent, so a retry after a failed reply is safe.
            root = build_message(event, self._links, root=True)
            try:
                self._web.chat_update(channel=channel_id, ts=ts, text=root.text, blocks=root.blocks)
            except SlackApiError as exc:
                err = _api_error(exc, "chat.update")
                if not err.permanent:
                    raise err from None
                # The root was deleted or cannot be edited: the reply below still closes the thread.
        try:
            self._web.chat_postMessage(
                channel=channel_id, thread_ts=ts, text=message.text, blocks=message.blocks
            )
        except SlackApiError as exc:
            raise _api_error(exc, "chat.postMessage") from None
        return None
