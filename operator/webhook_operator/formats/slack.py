"""Slack: one Block Kit message per batch, for people to read in a channel (incoming webhook).

Shape: ``{"text": fallback, "blocks": [header, section per event, context notes]}``. Top-level blocks rather than
OpenMetadata's ``attachments: [{color, blocks}]``: Slack calls attachments legacy, renders them collapsed, and the
colour bar is all they add.

* one event: header = the title ("Table … was updated by admin"); one section with the entity link (or FQN),
  ``eventType · version · time`` and up to 20 changed fields ``old → new``.
* a batch: header "N OpenMetadata events"; one section per event (title linking the entity, meta line, up to 5
  changes).
* recipients (sendTo*): a context block "Owners: @john.doe, team DataEngineering · Admins: @admin". Real Slack
  mentions (``<@U123>``) need Slack user ids and OpenMetadata only gives names, so this is plain text: people see
  who is concerned, but Slack does not notify them.

Slack rejects a message that breaks a limit, and the whole batch would then be retried forever, so every limit is
enforced by construction: at most 50 blocks, header ≤ 150 characters, section text ≤ 3000, context text ≤ 2000,
``text`` ≤ 3000 characters before escaping (Slack allows 40,000), the serialized message under 40,000 characters.
Events that do not fit are replaced by a "… and 7 more events" note, changes by "… and 3 more changes".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from webhook_operator.api.encoding import compact_json, compact_json_text
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.text import truncate
from webhook_operator.formats._common import (
    MAX_CHANGES_BATCHED,
    MAX_CHANGES_SINGLE,
    MAX_NAME_CHARS,
    action,
    batch_recipients,
    entity_kind,
    entity_url,
    fit_largest,
    join_within,
    meta_line,
    more_note,
    one_line,
    require_events,
    subject,
    summarize_changes,
    title,
)
from webhook_operator.formats.base import RenderContext, Rendered

MAX_BLOCKS = 50
MAX_HEADER_CHARS = 150
MAX_SECTION_CHARS = 3000
MAX_CONTEXT_CHARS = 2000
MAX_FALLBACK_CHARS = 3000
#: Slack documents no total size for webhook messages; this bound keeps a message far from any hidden one.
MAX_MESSAGE_CHARS = 40_000
#: Longer links are dropped (the FQN stays as text): Slack cuts long URLs in links, which makes them broken.
MAX_URL_CHARS = 2000


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: only &, < and > are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str | None, text: str) -> str:
    if url is None or len(url) > MAX_URL_CHARS:
        return escape(text)
    safe_url = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    return f"<{safe_url}|{escape(text)}>"


def _section(event: ChangeEvent, ctx: RenderContext, *, with_title: bool) -> dict[str, Any]:
    entity = f"*{_link(entity_url(event, ctx), one_line(subject(event), MAX_NAME_CHARS))}*"
    first = entity
    if with_title:
        first = f"{escape(entity_kind(event.entity_type))} {entity} {escape(action(event))}"
        if event.user_name:
            first += f" by *{escape(one_line(event.user_name, MAX_NAME_CHARS))}*"
    changes = [f"• *{escape(c.name)}*: {escape(c.change)}" for c in summarize_changes(event)]
    limit = MAX_CHANGES_BATCHED if with_title else MAX_CHANGES_SINGLE
    text = join_within([first, escape(meta_line(event))], changes, MAX_SECTION_CHARS, max_items=limit, noun="change")
    return {"type": "section", "text": _mrkdwn(text)}


def _mrkdwn(text: str) -> dict[str, Any]:
    """``verbatim``: Slack then takes only explicit ``<…>`` markup (escaped in event text, so only our own links)
    and does not auto-link URLs, channel names or ``@channel`` written in a description or a name."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(truncate(escape(text), MAX_CONTEXT_CHARS))]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": truncate(text, MAX_HEADER_CHARS), "emoji": True}}


class SlackFormatter:
    def render(self, events: Sequence[ChangeEvent], ctx: RenderContext) -> Rendered:
        require_events(events)
        single = len(events) == 1
        heading = title(events[0]) if single else f"{len(events)} OpenMetadata events"
        sections = [_section(event, ctx, with_title=not single) for event in events]
        mentions = batch_recipients(events, ctx).mention_line()
        fallback = heading if single else f"{heading}: " + "; ".join(title(event) for event in events)
        if mentions:
            fallback += "\n" + mentions

        def build(shown: int) -> dict[str, Any]:
            blocks = [_header(heading), *sections[:shown]]
            if shown < len(events):
                blocks.append(_context(more_note(len(events) - shown, "event")))
            if mentions:
                blocks.append(_context(mentions))
            return {"text": escape(truncate(fallback, MAX_FALLBACK_CHARS)), "blocks": blocks}

        def fits(message: dict[str, Any]) -> bool:
            return len(message["blocks"]) <= MAX_BLOCKS and len(compact_json_text(message)) <= MAX_MESSAGE_CHARS

        message = fit_largest(len(events), build, fits)
        return Rendered(body=compact_json(message), content_type="application/json")
