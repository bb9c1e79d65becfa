"""Google Chat: one card message per batch, for a Chat space incoming webhook.

Shape: ``{"text": fallback, "cardsV2": [{"cardId": "openmetadata-<first event id>", "card": {"header": {"title",
"subtitle"}, "sections": [...]}}]}``; one section per event holding a ``decoratedText`` (meta line over the entity
link, "by user" under it), a ``textParagraph`` with the changed fields ``old → new`` (up to 20 for one event, 5 per
event in a batch), and a ``buttonList`` "Open in OpenMetadata" when a UI base URL is configured. In a batch each
section is headed by the event's title and the card header says "N OpenMetadata events".

``text`` is short (the title, or "N OpenMetadata events"): Chat shows it above the card and in notifications.
Recipients (sendTo*) get a last section "Owners: @john.doe, team DataEngineering": Chat mentions
(``<users/123>``) need Chat user ids and OpenMetadata only gives names, so this is plain text.

Card text is Chat's HTML subset, so every value is HTML-escaped. ``text`` is Chat's text-message syntax
(``<users/all>``, ``<url|text>``), which has no escape, so the title there (and, to read alike, in the plain-text
card header) goes through ``literal`` (look-alikes for ``< > [ ] *``): metadata editors must not be able to ping a
space or plant a link.

Limits: a message is at most 32,000 bytes and a card is kept to 100 widgets; the serialized message is kept under
30,000 bytes and events that do not fit are replaced by a "… and 7 more events" section.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from webhook_operator.api.encoding import compact_json
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.text import truncate
from webhook_operator.formats._common import (
    MAX_CHANGES_BATCHED,
    MAX_CHANGES_SINGLE,
    MAX_NAME_CHARS,
    batch_recipients,
    entity_url,
    fit_largest,
    join_within,
    literal,
    meta_line,
    more_note,
    one_line,
    require_events,
    subject,
    summarize_changes,
    title,
)
from webhook_operator.formats.base import RenderContext, Rendered

MAX_BYTES = 30_000
MAX_WIDGETS = 100
MAX_HEADER_CHARS = 200
MAX_PARAGRAPH_CHARS = 4000
MAX_URL_CHARS = 2000


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _paragraph(text: str) -> dict[str, Any]:
    return {"textParagraph": {"text": text}}


def _section(event: ChangeEvent, ctx: RenderContext, *, batched: bool) -> dict[str, Any]:
    url = entity_url(event, ctx)
    if url is not None and len(url) > MAX_URL_CHARS:
        url = None
    name = _escape(one_line(subject(event), MAX_NAME_CHARS))
    entity = name if url is None else f'<a href="{html.escape(url, quote=True)}">{name}</a>'
    decorated: dict[str, Any] = {"topLabel": _escape(meta_line(event)), "text": entity, "wrapText": True}
    if event.user_name:
        decorated["bottomLabel"] = _escape(f"by {one_line(event.user_name, MAX_NAME_CHARS)}")
    widgets: list[dict[str, Any]] = [{"decoratedText": decorated}]
    changes = [f"<b>{_escape(c.name)}</b>: {_escape(c.change)}" for c in summarize_changes(event)]
    if changes:
        limit = MAX_CHANGES_BATCHED if batched else MAX_CHANGES_SINGLE
        text = join_within([], changes, MAX_PARAGRAPH_CHARS, max_items=limit, noun="change")
        widgets.append(_paragraph(text.strip("\n").replace("\n", "<br>")))
    if url is not None:
        button = {"text": "Open in OpenMetadata", "onClick": {"openLink": {"url": url}}}
        widgets.append({"buttonList": {"buttons": [button]}})
    section: dict[str, Any] = {"widgets": widgets}
    if batched:
        section = {"header": _escape(truncate(title(event), MAX_HEADER_CHARS)), **section}
    return section


def _widget_count(message: dict[str, Any]) -> int:
    return sum(len(s["widgets"]) for card in message["cardsV2"] for s in card["card"]["sections"])


class GoogleChatFormatter:
    def render(self, events: Sequence[ChangeEvent], ctx: RenderContext) -> Rendered:
        require_events(events)
        single = len(events) == 1
        # ``text`` is Chat's text-message markup (``<users/all>``, ``<url|text>``, ``*bold*``) with no escape: the
        # title is made literal. The header title is plain text; it gets the same, so the two still read alike.
        heading = literal(
            truncate(title(events[0]) if single else f"{len(events)} OpenMetadata events", MAX_HEADER_CHARS)
        )
        header = {"title": heading, "subtitle": truncate(f"Webhook {ctx.webhook_name}", MAX_HEADER_CHARS)}
        sections = [_section(event, ctx, batched=not single) for event in events]
        mentions = batch_recipients(events, ctx).mention_line()
        footer = [{"widgets": [_paragraph(_escape(truncate(mentions, MAX_PARAGRAPH_CHARS)))]}] if mentions else []

        def build(shown: int) -> dict[str, Any]:
            body = sections[:shown]
            if shown < len(events):
                body = [*body, {"widgets": [_paragraph(more_note(len(events) - shown, "event"))]}]
            card = {"header": header, "sections": [*body, *footer]}
            return {"text": heading, "cardsV2": [{"cardId": f"openmetadata-{events[0].id}", "card": card}]}

        def fits(message: dict[str, Any]) -> bool:
            return _widget_count(message) <= MAX_WIDGETS and len(compact_json(message)) <= MAX_BYTES

        message = fit_largest(len(events), build, fits)
        return Rendered(body=compact_json(message), content_type="application/json")
