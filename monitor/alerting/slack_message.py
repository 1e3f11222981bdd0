"""Slack messages for incident events, pure: same event in, same Block Kit out (golden-tested).

Messages lead with the cause in words (the event's ``title``, the incident summary's root cause);
the cause code stays in the small print for searching. The thread root is rendered from the
incident's summary (:func:`build_root`) and edited with every later event, so it always tells the
incident as it stands. No text can make Slack refuse a message for its form: every text is clipped
to Slack's documented limits at a word boundary (:func:`clip`), and every message carries a plain
text form for the retry without blocks (:class:`SlackMessage`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from monitor.alerting.base import Event, EventKind, Member
from monitor.alerting.config import LinksConfig
from monitor.alerting.quorum import seen_from

# Slack's documented limits (Block Kit reference and chat.postMessage), counted as Slack counts:
# characters of the text as sent, i.e. after mrkdwn escaping (``&`` is five of them).
HEADER_CHARS = 150  # header block, plain_text
SECTION_CHARS = 3000  # section block text; also any one mrkdwn text object (context elements)
FIELD_CHARS = 2000  # each of a section's fields
MAX_FIELDS = 10  # fields per section
MAX_BLOCKS = 50
TEXT_CHARS = 40_000  # the top-level text: Slack truncates beyond it
#: The plain-text retry stays within the length Slack recommends for a message's text.
PLAIN_CHARS = 4000
ELLIPSIS = "…"

_JOINED = "no separate page."

_EMOJI = {
    EventKind.OPENED: ":red_circle:",
    EventKind.JOINED: ":large_orange_circle:",
    EventKind.UPDATED: ":large_yellow_circle:",
    EventKind.REMINDER: ":bell:",
    EventKind.RECOVERED: ":white_check_mark:",
    EventKind.RESOLVED: ":large_green_circle:",
}


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """What is posted: the notification/fallback ``text`` and the Block Kit ``blocks``.

    ``plain`` is the whole message as text alone, sent when Slack refuses the blocks' form.
    """

    text: str
    blocks: list[dict[str, Any]]
    plain: str


def _esc(text: str) -> str:
    # Slack mrkdwn control characters; everything else is literal.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _width(text: str) -> int:
    # UTF-16 code units: never less than the characters Slack counts, whichever way it counts them.
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int, *, escape: bool = False) -> str:
    """``text`` (mrkdwn-escaped when ``escape``) in at most ``limit`` characters, never refused.

    Text that fits is returned whole. Longer text is cut at the last whitespace that fits and ends
    in "…", so words are never split; the one exception is a run without whitespace longer than
    half the limit (a URL, a token, a base64 blob), which is cut where the limit falls, since a
    whitespace cut would drop nearly everything. Escaping is measured before cutting, so an entity
    such as ``&amp;`` is never split either.
    """
    out = _esc(text) if escape else text
    if _width(out) <= limit:
        return out
    if limit < 2 * _width(ELLIPSIS):
        return ""
    budget = limit - _width(ELLIPSIS)
    used = cut = 0
    space = -1
    for i, ch in enumerate(text):
        w = _width(_esc(ch) if escape else ch)
        if used + w > budget:
            break
        used += w
        cut = i + 1
        if ch.isspace():
            space = i
    if not text[cut].isspace() and space >= 0 and space * 2 >= budget:
        cut = space
    kept = text[:cut].rstrip()
    return (_esc(kept) if escape else kept) + ELLIPSIS


def _share(needs: list[int], budget: int) -> list[int]:
    """Split ``budget`` among parts needing ``needs``: short parts whole, the rest equal shares."""
    given = [0] * len(needs)
    left = budget
    order = sorted(range(len(needs)), key=needs.__getitem__)
    for k, i in enumerate(order):
        given[i] = min(needs[i], max(0, left // (len(order) - k)))
        left -= given[i]
    return given


def _lines(parts: list[tuple[str, str]], limit: int) -> str:
    """mrkdwn lines ``prefix + escaped text`` within ``limit`` together; long texts are clipped."""
    fixed = sum(_width(prefix) for prefix, _ in parts) + len(parts) - 1
    needs = [_width(_esc(text)) for _, text in parts]
    shares = _share(needs, limit - fixed)
    return "\n".join(
        prefix + clip(text, n, escape=True) for (prefix, text), n in zip(parts, shares, strict=True)
    )


def duration_words(seconds: float) -> str:
    """A duration as people say it: "40 s", "3 min", "2 h 5 min", "3 d 4 h" (rounded to its last unit)."""
    total = max(0, math.floor(seconds + 0.5))
    if total < 60:
        return f"{total} s"
    minutes = math.floor(total / 60 + 0.5)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        h, m = divmod(minutes, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(math.floor(minutes / 60 + 0.5), 24)
    return f"{d} d {h} h" if h else f"{d} d"


def _when(at: datetime) -> str:
    """A Slack date token (rendered in the reader's time zone) with a UTC fallback."""
    epoch = int(at.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} {{time}}|{at.strftime('%Y-%m-%d %H:%M UTC')}>"


def headline(event: Event, *, root: bool = False) -> str:
    """What happened, in words, cause first: the header, the notification and the plain text start."""
    lasted = duration_words((event.at - event.since).total_seconds())
    title = event.title
    match event.kind:
        case EventKind.OPENED:
            return title or f"{event.probe} failing"
        case EventKind.JOINED:
            return f"{event.probe} failing too: {title}" if title else f"{event.probe} failing too"
        case EventKind.UPDATED:
            return (
                f"{event.probe} failing differently: {title}"
                if title
                else f"{event.probe} failing differently"
            )
        case EventKind.REMINDER:
            return (
                f"{title}: still failing after {lasted}"
                if title
                else f"{event.probe} still failing after {lasted}"
            )
        case EventKind.RECOVERED:
            still = event.summary.active if event.summary is not None else ()
            rest = f"; still failing: {', '.join(m.where for m in still)}" if still else ""
            return f"{event.probe} recovered{rest}"
    if event.summary is not None and event.kind is EventKind.RESOLVED:
        lasted = duration_words((event.at - event.summary.since).total_seconds())
        return f"{event.summary.title}: resolved after {lasted}"
    if root and title:
        return f"{title}: resolved after {lasted}"
    return f"{event.probe} resolved after {lasted}"


def _change(event: Event, *, error_class: bool = False) -> str:
    """``probe PASS → FAIL at step upload (HTTP 404)``: the one-line fact under the headline."""
    line = f"{event.probe} {event.old_status} → {event.new_status}"
    if event.kind is EventKind.RESOLVED or not event.step:
        return line
    line += f" at step {event.step}"
    detail = [f"HTTP {event.http_status}"] if event.http_status is not None else []
    if error_class and event.error_class:
        detail.append(event.error_class)
    return line + (f" ({', '.join(detail)})" if detail else "")


def build_message(event: Event, links: LinksConfig | None = None, *, root: bool = False) -> SlackMessage:
    """The Slack message for ``event``. Pure: same input, same output (golden-tested).

    ``root`` renders the thread root's edited form on resolution. Every text is clipped to Slack's
    limits (see :func:`clip`), so no length makes Slack refuse the message.
    """
    links = links or LinksConfig()
    if event.summary is not None and (root or event.kind is EventKind.OPENED):
        return build_root(event, links)
    env = f"[{event.environment}] " if event.environment else ""
    head = headline(event, root=root)
    failing = event.kind not in (EventKind.RESOLVED, EventKind.RECOVERED)
    text = clip(f"{env}{head} — {_change(event)}", TEXT_CHARS, escape=True)

    fields = [
        ("*Environment*\n", event.environment or "-"),
        ("*Probe*\n", event.probe),
        ("*Change*\n", f"{event.old_status} → {event.new_status}"),
    ]
    if failing:
        status = str(event.http_status) if event.http_status is not None else "-"
        fields.append(("*Failing step*\n", event.step or "-"))
        fields.append(("*HTTP status*\n", status + (f" ({event.error_class})" if event.error_class else "")))
    if event.locations:
        fields.append(("*Seen from*\n", ", ".join(event.locations)))
    field_objects = [
        MarkdownTextObject(text=prefix + clip(value, FIELD_CHARS - len(prefix), escape=True))
        for prefix, value in fields
    ]
    field_objects.insert(3, MarkdownTextObject(text=f"*Since*\n{_when(event.since)}"))
    blocks: list[Block] = [
        HeaderBlock(
            text=PlainTextObject(text=clip(f"{_EMOJI[event.kind]} {env}{head}", HEADER_CHARS), emoji=True)
        ),
        SectionBlock(fields=field_objects[:MAX_FIELDS]),
    ]
    diagnosis = [
        (label, value)
        for label, value in (
            ("*Likely cause:* ", event.title),
            ("*Hint:* ", event.hint),
            ("*Action:* ", event.action),
        )
        if failing and value
    ]
    if diagnosis:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_lines(diagnosis, SECTION_CHARS))))
    if failing and event.message:
        body = clip(event.message, SECTION_CHARS - 6, escape=True)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f"```{body}```")))
    if event.kind is EventKind.JOINED:
        note = f"Depends on *{_esc(event.incident_probe)}*, whose incident this is: {_JOINED}"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=clip(note, SECTION_CHARS))]))
    blocks.append(
        ContextBlock(elements=[MarkdownTextObject(text=clip(_context(event, links), SECTION_CHARS))])
    )
    return SlackMessage(
        text=text,
        blocks=[b.to_dict() for b in blocks[:MAX_BLOCKS]],
        plain=_plain(event, links, head, failing),
    )


def _member_line(member: Member, *, resolved: bool) -> str:
    """``• artifact_roundtrip/upload (HTTP 404, FAIL) — failing``: one affected probe."""
    facts = [f"HTTP {member.http_status}"] if member.http_status is not None else []
    if member.status:
        facts.append(member.status)
    state = "" if resolved else (" — failing" if member.active else " — recovered")
    detail = f" ({', '.join(facts)})" if facts else ""
    return f"• *{_esc(member.where)}*{_esc(detail)}{state}"


def build_root(event: Event, links: LinksConfig | None = None) -> SlackMessage:
    """The thread root for the incident ``event`` belongs to, from ``event.summary``: the root cause
    in words, where it shows, the first action, every affected probe and step. Posted when the
    incident opens and edited (``chat.update``) with every later event, so the root always tells
    the incident as it stands; on resolution it says how long it lasted and what was affected."""
    links = links or LinksConfig()
    summary = event.summary
    assert summary is not None
    env = f"[{event.environment}] " if event.environment else ""
    lasted = duration_words((event.at - summary.since).total_seconds())
    if summary.resolved:
        head = f"{summary.title}: resolved after {lasted}"
        emoji = _EMOJI[EventKind.RESOLVED]
    else:
        head = summary.title
        emoji = _EMOJI[EventKind.OPENED]
    where = f"{summary.root_probe}/{summary.root_step}" if summary.root_step else summary.root_probe
    failing = summary.active
    status = (
        f"resolved after {lasted}"
        if summary.resolved
        else f"{len(failing)} of {len(summary.members)} affected probes failing"
    )
    fields = [
        ("*Environment*\n", event.environment or "-"),
        ("*Root cause at*\n", where),
        ("*Status*\n", status),
    ]
    if summary.locations:
        # Several locations probe the platform: the page names those that see the failure.
        fields.append(("*Seen from*\n", ", ".join(summary.locations)))
    field_objects = [
        MarkdownTextObject(text=prefix + clip(value, FIELD_CHARS - len(prefix), escape=True))
        for prefix, value in fields
    ]
    field_objects.insert(2, MarkdownTextObject(text=f"*Since*\n{_when(summary.since)}"))
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(f"{emoji} {env}{head}", HEADER_CHARS), emoji=True)),
        SectionBlock(fields=field_objects[:MAX_FIELDS]),
    ]
    diagnosis = [
        (label, value)
        for label, value in (("*Hint:* ", summary.hint), ("*First action:* ", summary.action))
        if value and not summary.resolved
    ]
    if diagnosis:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_lines(diagnosis, SECTION_CHARS))))
    affected = "\n".join(_member_line(m, resolved=summary.resolved) for m in summary.members)
    label = "*Affected*\n"
    blocks.append(
        SectionBlock(text=MarkdownTextObject(text=label + clip(affected, SECTION_CHARS - len(label))))
    )
    context = [f"cause `{_esc(summary.cause)}`"] if summary.cause else []
    context.append(f"incident `{_esc(summary.incident_id)}`")
    blocks.append(
        ContextBlock(elements=[MarkdownTextObject(text=clip(_small_print(context, links), SECTION_CHARS))])
    )
    members_plain = "; ".join(
        m.where + ("" if summary.resolved else (" failing" if m.active else " recovered"))
        for m in summary.members
    )
    plain_parts = [
        (f"{emoji} ", f"{env}{head}"),
        ("Root cause at: ", where),
        ("Affected: ", members_plain),
    ]
    seen = seen_from(summary.locations)
    if seen:
        plain_parts.append(("", seen))
    if not summary.resolved:
        plain_parts += [
            (label_, v) for label_, v in (("Hint: ", summary.hint), ("First action: ", summary.action)) if v
        ]
    tail = clip(f"since {_when(summary.since)} · incident {summary.incident_id}", PLAIN_CHARS // 4)
    plain = _lines(plain_parts, PLAIN_CHARS - _width(tail) - 1) + "\n" + tail
    text = clip(
        f"{env}{head} — {_change(event)} · affected: {members_plain}" + (f" · {seen}" if seen else ""),
        TEXT_CHARS,
        escape=True,
    )
    return SlackMessage(text=text, blocks=[b.to_dict() for b in blocks[:MAX_BLOCKS]], plain=plain)


def _context(event: Event, links: LinksConfig) -> str:
    """The small print: the cause code (for searches), run, incident and links."""
    items = []
    if event.cause and event.kind is not EventKind.RESOLVED:
        items.append(f"cause `{_esc(event.cause)}`")
    items += [f"run `{_esc(event.run_id)}`", f"incident `{_esc(event.incident_id)}`"]
    return _small_print(items, links)


def _small_print(items: list[str], links: LinksConfig) -> str:
    """``items`` and the configured links (status page, Grafana), one line."""
    items = list(items)
    if links.status_page_url:
        items.append(f"<{links.status_page_url}|status page>")
    if links.grafana_url:
        items.append(f"<{links.grafana_url}|Grafana>")
    return " · ".join(items)


def _plain(event: Event, links: LinksConfig, head: str, failing: bool) -> str:
    """The message as text alone (no blocks), for the retry after Slack refused the blocks."""
    env = f"[{event.environment}] " if event.environment else ""
    parts = [
        (f"{_EMOJI[event.kind]} ", f"{env}{head}"),
        ("", _change(event, error_class=True)),
    ]
    if event.locations:
        parts.append(("", seen_from(event.locations)))
    if failing:
        parts += [
            (label, value) for label, value in (("Hint: ", event.hint), ("Action: ", event.action)) if value
        ]
        if event.message:
            parts.append(("", event.message))
    if event.kind is EventKind.JOINED:
        parts.append(("", f"Depends on {event.incident_probe}, whose incident this is: {_JOINED}"))
    context = clip(f"since {_when(event.since)} · {_context(event, links)}", PLAIN_CHARS // 4)
    return _lines(parts, PLAIN_CHARS - _width(context) - 1) + "\n" + context
