"""Slack: the notifier (slack-sdk); the messages are built by :mod:`monitor.alerting.slack_message`.

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

No alert is refused for its form: every text is clipped to Slack's documented limits at a word
boundary (:func:`clip`), and should Slack still answer ``invalid_blocks`` or another form error, the
same facts are sent once more as plain text without blocks (:data:`FORM_ERRORS`). Messages lead with
the cause in words (the event's ``title``); the cause code stays in the small print for searching.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from monitor.alerting.base import Event, EventKind, TransportError
from monitor.alerting.config import LinksConfig, SlackConfig
from monitor.alerting.slack_message import SlackMessage, build_message

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

#: Slack error codes that say the message's form was refused (too long, malformed blocks). The alert is
#: sent again once as plain text without blocks; only a refusal of that is permanent.
FORM_ERRORS = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "invalid_attachments",
        "invalid_payload",
        "msg_too_long",
        "no_text",
        "too_many_attachments",
        "markdown_text_conflict",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
    }
)


def _quiet_logger() -> logging.Logger:
    # slack-sdk logs request URLs at DEBUG; a webhook URL is a secret. An unattached logger with a
    # NullHandler keeps them out of every log no matter how the root logger is configured.
    logger = logging.Logger("synthmon.slack_sdk", level=logging.WARNING)
    logger.addHandler(logging.NullHandler())
    return logger


def _error_code(exc: SlackApiError) -> str:
    try:
        return str(exc.response.get("error") or "")
    except (AttributeError, TypeError, ValueError):  # a non-JSON body (e.g. a proxy's 502 page)
        return ""


def _api_error(exc: SlackApiError, method: str) -> TransportError:
    status = getattr(exc.response, "status_code", 0) or 0
    code = _error_code(exc)
    permanent = code in PERMANENT_ERRORS or (400 <= status < 500 and status != 429 and not code)
    if code == "ratelimited" or status == 429 or status >= 500:
        permanent = False
    return TransportError(f"slack {method}: HTTP {status} {code or 'error'}".strip(), permanent=permanent)


def _call(method: str, post: Callable[[bool], Any]) -> Any:
    """``post(True)`` sends with blocks; after a refusal of their form, ``post(False)`` once, as text.

    A form error (:data:`FORM_ERRORS`) must never drop an alert: the plain text carries the same
    facts. Only when Slack refuses that too is the error permanent.
    """
    try:
        return post(True)
    except SlackApiError as exc:
        if _error_code(exc) not in FORM_ERRORS:
            raise _api_error(exc, method) from None
    try:
        return post(False)
    except SlackApiError as exc:
        raise _api_error(exc, method) from None


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
        code = (resp.body or "").strip()[:60]
        if resp.status_code != 200 and code in FORM_ERRORS:
            # Slack refused the blocks' form: the same alert as plain text, once.
            resp = self._webhook.send(text=message.plain)
            code = (resp.body or "").strip()[:60]
        if resp.status_code == 200:
            return
        permanent = code in PERMANENT_ERRORS or (400 <= resp.status_code < 500 and resp.status_code != 429)
        raise TransportError(f"slack webhook: HTTP {resp.status_code} {code}".strip(), permanent=permanent)

    def _send_web(self, event: Event, message: SlackMessage, thread: str | None) -> str | None:
        web = self._web
        assert web is not None
        if thread is None:
            resp = _call(
                "chat.postMessage",
                lambda blocks: web.chat_postMessage(
                    channel=self._channel,
                    text=message.text if blocks else message.plain,
                    blocks=message.blocks if blocks else None,
                ),
            )
            return f"{resp['channel']}:{resp['ts']}"
        channel_id, _, ts = thread.partition(":")
        if event.summary is not None or (event.kind is EventKind.RESOLVED and event.owns_thread):
            # The root tells the incident as it stands: edit it with every event that carries the
            # incident's summary (a member joined or recovered, the incident resolved). Edit first:
            # chat.update is idempotent, so a retry after a failed reply is safe.
            root = build_message(event, self._links, root=True)
            try:
                _call(
                    "chat.update",
                    lambda blocks: web.chat_update(
                        channel=channel_id,
                        ts=ts,
                        text=root.text if blocks else root.plain,
                        # An empty list removes the root's old blocks, which would hide the text.
                        blocks=root.blocks if blocks else [],
                    ),
                )
            except TransportError as err:
                if not err.permanent:
                    raise
                # The root was deleted or cannot be edited: the reply below still closes the thread.
        _call(
            "chat.postMessage",
            lambda blocks: web.chat_postMessage(
                channel=channel_id,
                thread_ts=ts,
                text=message.text if blocks else message.plain,
                blocks=message.blocks if blocks else None,
            ),
        )
        return None
