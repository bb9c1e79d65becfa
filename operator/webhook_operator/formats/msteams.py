"""Microsoft Teams: one Adaptive Card 1.4 per batch, for a Teams Workflows ("Post to a channel when a webhook
request is received") webhook. Office 365 connectors and their MessageCard are retired; Workflows accept a
``message`` whose attachment is an Adaptive Card, which is what OpenMetadata itself moved to.

Shape: ``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
"contentUrl": null, "content": {"$schema": …, "type": "AdaptiveCard", "version": "1.4", "body": [...],
"actions": [...]}}]}``.

* one event: TextBlock title, TextBlock ``eventType · version · time``, FactSet of up to 20 changed fields
  (title = field, value = ``old → new``), and an ``Action.OpenUrl`` "Open in OpenMetadata" when a UI base URL is
  configured.
* a batch: TextBlock "N OpenMetadata events", then one Container per event (title with a markdown link to the
  entity, meta line, FactSet of up to 5 changes); no actions, the links are inline.
* recipients (sendTo*): a TextBlock "Owners: @john.doe, team DataEngineering". Teams ``<at>`` mentions need AAD
  ids; OpenMetadata gives names, so this is plain text.

TextBlock and Fact text is Adaptive Card markdown; event-derived text goes through ``literal`` (look-alikes for
``< > [ ] *``), so a name or description cannot make a link, an ``<at>`` tag or bold text; the only markdown link
is the one this format writes around the entity name.

Teams rejects payloads over about 28 KB; the serialized message is kept under 26,000 bytes by showing as many
events as fit and a "… and 7 more events" TextBlock for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from webhook_operator.api.encoding import compact_json
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

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
#: Teams' limit is about 28 KB for the whole request; keep a margin for the Workflows envelope.
MAX_BYTES = 26_000
MAX_FACT_TITLE_CHARS = 100
MAX_TEXT_CHARS = 2000
MAX_URL_CHARS = 2000


def _text(text: str, **properties: Any) -> dict[str, Any]:
    """A TextBlock of literal text: ``text`` may come from the event, so its markdown is neutralised."""
    return _markup(literal(text), **properties)


def _markup(markdown: str, **properties: Any) -> dict[str, Any]:
    """A TextBlock whose markdown the format wrote itself (the batch heading with its entity link)."""
    return {"type": "TextBlock", "text": truncate(markdown, MAX_TEXT_CHARS), "wrap": True, **properties}


def _facts(event: ChangeEvent, limit: int) -> list[dict[str, Any]]:
    changes = summarize_changes(event)
    elements: list[dict[str, Any]] = []
    if changes:
        facts = [
            {"title": literal(truncate(c.name, MAX_FACT_TITLE_CHARS)), "value": literal(c.change)}
            for c in changes[:limit]
        ]
        elements.append({"type": "FactSet", "facts": facts})
    if len(changes) > limit:
        elements.append(_text(more_note(len(changes) - limit, "change"), isSubtle=True, spacing="None"))
    return elements


def _markdown_link(url: str | None, text: str) -> str:
    """Adaptive Card markdown ``[text](url)`` around literal text (brackets in it would end the link early). The
    URL is the operator's own: the configured ui_base_url, then percent-encoded segments no event text can end."""
    label = literal(text)
    return label if url is None or len(url) > MAX_URL_CHARS else f"[{label}]({url})"


def _event_container(event: ChangeEvent, ctx: RenderContext) -> dict[str, Any]:
    entity = _markdown_link(entity_url(event, ctx), one_line(subject(event), MAX_NAME_CHARS))
    heading = f"{literal(entity_kind(event.entity_type))} {entity} {literal(action(event))}"
    if event.user_name:
        heading += f" by {literal(one_line(event.user_name, MAX_NAME_CHARS))}"
    items = [
        _markup(heading, weight="Bolder"),
        _text(meta_line(event), isSubtle=True, spacing="None"),
        *_facts(event, MAX_CHANGES_BATCHED),
    ]
    return {"type": "Container", "separator": True, "items": items}


def _message(body: list[dict[str, Any]], actions: list[dict[str, Any]]) -> dict[str, Any]:
    content: dict[str, Any] = {"$schema": SCHEMA, "type": "AdaptiveCard", "version": "1.4", "body": body}
    if actions:
        content["actions"] = actions
    content["msteams"] = {"width": "Full"}
    attachment = {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": content}
    return {"type": "message", "attachments": [attachment]}


class MSTeamsFormatter:
    def render(self, events: Sequence[ChangeEvent], ctx: RenderContext) -> Rendered:
        require_events(events)
        mentions = batch_recipients(events, ctx).mention_line()
        footer = [_text(mentions, isSubtle=True, separator=True)] if mentions else []
        single = len(events) == 1
        message = self._single(events[0], ctx, footer) if single else self._batch(events, ctx, footer)
        return Rendered(body=compact_json(message), content_type="application/json")

    @staticmethod
    def _single(event: ChangeEvent, ctx: RenderContext, footer: list[dict[str, Any]]) -> dict[str, Any]:
        url = entity_url(event, ctx)
        actions = [] if url is None else [{"type": "Action.OpenUrl", "title": "Open in OpenMetadata", "url": url}]
        head = [
            _text(title(event), weight="Bolder", size="Medium"),
            _text(meta_line(event), isSubtle=True, spacing="None"),
        ]
        limits = [MAX_CHANGES_SINGLE, 10, 5, 0]  # fewer facts until it fits (huge values in every field)
        candidates = (_message([*head, *_facts(event, limit), *footer], actions) for limit in limits)
        for message in candidates:
            if len(compact_json(message)) <= MAX_BYTES:
                return message
        return _message([_text(title(event), weight="Bolder", size="Medium")], actions)

    @staticmethod
    def _batch(events: Sequence[ChangeEvent], ctx: RenderContext, footer: list[dict[str, Any]]) -> dict[str, Any]:
        containers = [_event_container(event, ctx) for event in events]
        heading = _text(f"{len(events)} OpenMetadata events", weight="Bolder", size="Medium")

        def build(shown: int) -> dict[str, Any]:
            body = [heading, *containers[:shown]]
            if shown < len(events):
                body.append(_text(more_note(len(events) - shown, "event"), isSubtle=True, separator=True))
            return _message([*body, *footer], [])

        return fit_largest(len(events), build, lambda message: len(compact_json(message)) <= MAX_BYTES)
