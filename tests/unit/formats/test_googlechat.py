"""Google Chat: a cardsV2 message with the required keys, HTML-escaped, ≤ 32,000 bytes and ≤ 100 widgets."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from support.events import all_events, event
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookType
from webhook_operator.formats.base import RenderContext
from webhook_operator.formats.googlechat import GoogleChatFormatter

from ._helpers import FCT, HIGHLIGHTS, UI, batch, ctx, everyone, extreme_event, wide_batch

CHAT = WebhookType.GOOGLE_CHAT
WIDGETS = {"decoratedText", "textParagraph", "buttonList"}


def check_message(message: dict[str, Any]) -> list[str]:
    """Required keys of the Chat message and card schema for the widgets this format uses."""
    problems: list[str] = []
    if not isinstance(message.get("text"), str) or set(message) != {"text", "cardsV2"}:
        problems.append("message: text and cardsV2")
    cards = message.get("cardsV2")
    if not isinstance(cards, list) or len(cards) != 1:
        return [*problems, "message: exactly one card"]
    (entry,) = cards
    if not isinstance(entry.get("cardId"), str) or not entry["cardId"]:
        problems.append("cardId")
    card = entry.get("card", {})
    header = card.get("header", {})
    if not isinstance(header.get("title"), str) or not header["title"]:
        problems.append("card.header.title")
    sections = card.get("sections")
    if not isinstance(sections, list) or not sections:
        return [*problems, "card.sections"]
    for s, section in enumerate(sections):
        if "header" in section and not isinstance(section["header"], str):
            problems.append(f"sections[{s}].header")
        widgets = section.get("widgets")
        if not isinstance(widgets, list) or not widgets:
            problems.append(f"sections[{s}].widgets")
            continue
        for w, widget in enumerate(widgets):
            where = f"sections[{s}].widgets[{w}]"
            if len(widget) != 1 or next(iter(widget)) not in WIDGETS:
                problems.append(f"{where}: one of {sorted(WIDGETS)}")
            elif "decoratedText" in widget and not isinstance(widget["decoratedText"].get("text"), str):
                problems.append(f"{where}: decoratedText.text")
            elif "textParagraph" in widget and not isinstance(widget["textParagraph"].get("text"), str):
                problems.append(f"{where}: textParagraph.text")
            elif "buttonList" in widget:
                for button in widget["buttonList"].get("buttons") or [None]:
                    if (
                        not button
                        or not button.get("text")
                        or not button.get("onClick", {}).get("openLink", {}).get("url")
                    ):
                        problems.append(f"{where}: button needs text and onClick.openLink.url")
    return problems


def render(events: list[ChangeEvent], context: RenderContext | None = None) -> dict[str, Any]:
    rendered = GoogleChatFormatter().render(events, context or ctx(CHAT))
    assert rendered.content_type == "application/json"
    assert len(rendered.body) <= 32_000
    message: dict[str, Any] = json.loads(rendered.body)
    assert check_message(message) == []
    widgets = sum(len(section["widgets"]) for section in message["cardsV2"][0]["card"]["sections"])
    assert widgets <= 100
    return message


def sections_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    sections: list[dict[str, Any]] = message["cardsV2"][0]["card"]["sections"]
    return sections


def test_the_structural_check_bites() -> None:
    bad = render([event(10)])
    sections_of(bad)[0]["widgets"] += [{"decoratedText": {}}, {"image": {}}, {"buttonList": {"buttons": [{}]}}]
    del bad["cardsV2"][0]["card"]["header"]["title"]
    assert len(check_message(bad)) == 4


def test_single_event_golden() -> None:
    url = f"{UI}/table/{FCT}"
    assert render([event(10)], everyone(CHAT)) == {
        "text": f"Table {FCT} was updated by priya.shah",
        "cardsV2": [
            {
                "cardId": "openmetadata-b6a923e8-5ec6-5e67-8d48-e62c32733c6a",
                "card": {
                    "header": {"title": f"Table {FCT} was updated by priya.shah", "subtitle": "Webhook finance-alerts"},
                    "sections": [
                        {
                            "widgets": [
                                {
                                    "decoratedText": {
                                        "topLabel": "entityUpdated · v0.5 → v0.6 · 2026-03-04 18:38:03 UTC",
                                        "text": f'<a href="{url}">{FCT}</a>',
                                        "wrapText": True,
                                        "bottomLabel": "by priya.shah",
                                    }
                                },
                                {"textParagraph": {"text": "<b>tags</b>: Tier.Tier1 → Tier.Tier2"}},
                                {
                                    "buttonList": {
                                        "buttons": [
                                            {"text": "Open in OpenMetadata", "onClick": {"openLink": {"url": url}}}
                                        ]
                                    }
                                },
                            ]
                        },
                        {
                            "widgets": [
                                {"textParagraph": {"text": "Owners: team FinanceDataTeam · Admins: @admin, @dpo"}}
                            ]
                        },
                    ],
                },
            }
        ],
    }


@pytest.mark.parametrize("number", HIGHLIGHTS)
def test_highlights(number: int) -> None:
    message = render([event(number)], everyone(CHAT))
    assert message["text"] == message["cardsV2"][0]["card"]["header"]["title"]


def test_all_samples_valid_with_and_without_links() -> None:
    for source in all_events():
        render([source], everyone(CHAT))
        no_link = render([source], ctx(CHAT, ui_base_url=None))
        assert "buttonList" not in json.dumps(no_link)


def test_html_is_escaped() -> None:
    (section,) = sections_of(render([event(27)]))
    paragraph = section["widgets"][1]["textParagraph"]["text"]
    assert "&lt;sales-ops@example.com&gt;" in paragraph and "<sales-ops" not in paragraph
    assert paragraph.count("<br>") == 1  # two changes, one per line


def test_batch_of_three_has_a_section_per_event() -> None:
    message = render([event(6), event(19), event(23)], ctx(CHAT, batch_size=3))
    assert message["text"] == "3 OpenMetadata events"
    sections = sections_of(message)
    assert [s["header"] for s in sections] == [
        f"Table {FCT} was updated by ana.ruiz",
        "Test case postgres_crm.crm.public.crm_contacts.email.crm_contacts_email_not_null was updated by ingestion-bot",
        "Table postgres_crm.crm.sales_jp.顧客マスタ was created by ingestion-bot",
    ]


@pytest.mark.parametrize(
    "events", [batch(100), wide_batch(100), [extreme_event()] * 100], ids=["mixed", "wide", "extreme"]
)
def test_batch_of_100_stays_within_limits(events: list[ChangeEvent]) -> None:
    sections = sections_of(render(events, everyone(CHAT, batch_size=100)))
    shown = sum(1 for section in sections if "header" in section)
    assert 0 < shown < 100
    assert sections[-2]["widgets"] == [{"textParagraph": {"text": f"… and {100 - shown} more events"}}]
    assert sections[-1]["widgets"][0]["textParagraph"]["text"].startswith("Owners: ")


def test_extreme_single_event() -> None:
    (section, _recipients) = sections_of(render([extreme_event()], everyone(CHAT)))
    paragraph = section["widgets"][1]["textParagraph"]["text"]
    assert re.search(r"<br>… and \d+ more changes$", paragraph)
    assert "&lt;&amp;&gt;" in paragraph
