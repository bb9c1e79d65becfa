"""Microsoft Teams: a Workflows message carrying an Adaptive Card 1.4, structurally valid and under ~28 KB."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from support.events import all_events, event
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookType
from webhook_operator.formats.base import RenderContext
from webhook_operator.formats.msteams import MSTeamsFormatter

from ._helpers import FCT, HIGHLIGHTS, UI, batch, ctx, everyone, extreme_event, wide_batch

TEAMS = WebhookType.MSTEAMS
TEAMS_LIMIT = 28 * 1024

# Adaptive Card 1.4 schema facts for the element types this format uses.
ENUMS = {
    "weight": {"Default", "Lighter", "Bolder"},
    "size": {"Default", "Small", "Medium", "Large", "ExtraLarge"},
    "spacing": {"None", "Small", "Default", "Medium", "Large", "ExtraLarge", "Padding"},
}
BOOLEANS = {"wrap", "isSubtle", "separator"}
ELEMENT_PROPERTIES = {
    "TextBlock": {"type", "text", "wrap", "weight", "size", "isSubtle", "spacing", "separator"},
    "FactSet": {"type", "facts", "spacing", "separator"},
    "Container": {"type", "items", "spacing", "separator"},
}


def check_element(element: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    kind = element.get("type")
    if kind not in ELEMENT_PROPERTIES:
        return [f"{path}: unknown element type {kind!r}"]
    problems += [f"{path}: unknown property {key}" for key in set(element) - ELEMENT_PROPERTIES[kind]]
    for key, allowed in ENUMS.items():
        if key in element and element[key] not in allowed:
            problems.append(f"{path}.{key}: {element[key]!r} not in {sorted(allowed)}")
    problems += [
        f"{path}.{key}: not a boolean" for key in BOOLEANS if key in element and type(element[key]) is not bool
    ]
    if kind == "TextBlock" and not (isinstance(element.get("text"), str) and element["text"]):
        problems.append(f"{path}: TextBlock needs a non-empty text")
    if kind == "FactSet":
        facts = element.get("facts")
        if not isinstance(facts, list) or not facts:
            problems.append(f"{path}: FactSet needs facts")
        else:
            for i, fact in enumerate(facts):
                if set(fact) != {"title", "value"} or not all(isinstance(v, str) for v in fact.values()):
                    problems.append(f"{path}.facts[{i}]: a fact is {{title: str, value: str}}")
    if kind == "Container":
        items = element.get("items")
        if not isinstance(items, list) or not items:
            problems.append(f"{path}: Container needs items")
        else:
            for i, item in enumerate(items):
                problems += check_element(item, f"{path}.items[{i}]")
    return problems


def check_message(message: dict[str, Any]) -> list[str]:
    """The Teams Workflows envelope and the card, per the Adaptive Card 1.4 schema (required properties, enum
    values, element types) for what the format uses."""
    problems: list[str] = []
    if message.get("type") != "message" or len(message.get("attachments", [])) != 1:
        return ["envelope: type must be message with exactly one attachment"]
    (attachment,) = message["attachments"]
    if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
        problems.append("attachment: wrong contentType")
    if "contentUrl" not in attachment or attachment["contentUrl"] is not None:
        problems.append("attachment: contentUrl must be null")
    card = attachment.get("content", {})
    if card.get("type") != "AdaptiveCard" or card.get("version") != "1.4":
        problems.append("card: type AdaptiveCard, version 1.4")
    if card.get("$schema") != "http://adaptivecards.io/schemas/adaptive-card.json":
        problems.append("card: $schema")
    unknown = set(card) - {"$schema", "type", "version", "body", "actions", "msteams"}
    problems += [f"card: unknown property {key}" for key in unknown]
    body = card.get("body")
    if not isinstance(body, list) or not body:
        problems.append("card: body must be a non-empty list")
    else:
        for i, element in enumerate(body):
            problems += check_element(element, f"body[{i}]")
    for i, act in enumerate(card.get("actions", [])):
        if act.get("type") != "Action.OpenUrl" or not isinstance(act.get("title"), str) or not act["title"]:
            problems.append(f"actions[{i}]: Action.OpenUrl needs a title")
        if urlsplit(str(act.get("url"))).scheme not in {"http", "https"}:
            problems.append(f"actions[{i}]: Action.OpenUrl needs an absolute url")
    if "actions" in card and not card["actions"]:
        problems.append("card: empty actions")
    return problems


def render(events: list[ChangeEvent], context: RenderContext | None = None) -> dict[str, Any]:
    rendered = MSTeamsFormatter().render(events, context or ctx(TEAMS))
    assert rendered.content_type == "application/json"
    assert len(rendered.body) <= 26_000 < TEAMS_LIMIT
    message: dict[str, Any] = json.loads(rendered.body)
    assert check_message(message) == []
    return message


def body_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = message["attachments"][0]["content"]["body"]
    return body


def test_the_structural_check_bites() -> None:
    good = render([event(10)])
    bad = json.loads(json.dumps(good))
    card = bad["attachments"][0]["content"]
    card["body"] += [{"type": "TextBlock"}, {"type": "FactSet", "facts": [{"title": "x"}]}, {"type": "Image"}]
    card["body"][0]["weight"] = "Heavy"
    card["actions"][0].pop("url")
    assert len(check_message(bad)) == 5


def test_single_event_golden() -> None:
    url = f"{UI}/table/{FCT}"
    assert render([event(10)], everyone(TEAMS)) == {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": f"Table {FCT} was updated by priya.shah",
                            "wrap": True,
                            "weight": "Bolder",
                            "size": "Medium",
                        },
                        {
                            "type": "TextBlock",
                            "text": "entityUpdated · v0.5 → v0.6 · 2026-03-04 18:38:03 UTC",
                            "wrap": True,
                            "isSubtle": True,
                            "spacing": "None",
                        },
                        {"type": "FactSet", "facts": [{"title": "tags", "value": "Tier.Tier1 → Tier.Tier2"}]},
                        {
                            "type": "TextBlock",
                            "text": "Owners: team FinanceDataTeam · Admins: @admin, @dpo",
                            "wrap": True,
                            "isSubtle": True,
                            "separator": True,
                        },
                    ],
                    "actions": [{"type": "Action.OpenUrl", "title": "Open in OpenMetadata", "url": url}],
                    "msteams": {"width": "Full"},
                },
            }
        ],
    }


@pytest.mark.parametrize("number", HIGHLIGHTS)
def test_highlights(number: int) -> None:
    message = render([event(number)], everyone(TEAMS))
    assert body_of(message)[0]["text"].startswith(("Table ", "Test case ", "Pipeline "))


def test_all_samples_valid_with_and_without_links() -> None:
    for source in all_events():
        render([source], everyone(TEAMS))
        no_link = render([source], ctx(TEAMS, ui_base_url=None))
        assert "actions" not in no_link["attachments"][0]["content"]


def test_unicode_and_test_result() -> None:
    assert "顧客マスタ" in body_of(render([event(23)]))[0]["text"]
    facts = body_of(render([event(19)]))[2]["facts"]
    assert facts == [
        {
            "title": "testCaseResult",
            "value": "Failed: Found nullCount=37 null values in column email (0.42% of 8,812 rows).",
        }
    ]


def test_batch_of_three_uses_containers_with_inline_links() -> None:
    message = render([event(6), event(7), event(33)], ctx(TEAMS, batch_size=3))
    body = body_of(message)
    assert body[0]["text"] == "3 OpenMetadata events"
    containers = [element for element in body if element["type"] == "Container"]
    assert len(containers) == 3
    assert containers[0]["items"][0]["text"] == f"Table [{FCT}]({UI}/table/{FCT}) was updated by ana.ruiz"
    assert containers[1]["items"][2]["facts"] == [{"title": "owners", "value": "ana.ruiz → FinanceDataTeam"}]
    assert "actions" not in message["attachments"][0]["content"]


@pytest.mark.parametrize(
    "events", [batch(100), wide_batch(100), [extreme_event()] * 100], ids=["mixed", "wide", "extreme"]
)
def test_batch_of_100_stays_under_the_size_limit(events: list[ChangeEvent]) -> None:
    body = body_of(render(events, everyone(TEAMS, batch_size=100)))
    shown = sum(1 for element in body if element["type"] == "Container")
    assert 0 < shown < 100
    assert body[-2]["text"] == f"… and {100 - shown} more events"
    assert body[-1]["text"].startswith("Owners: ")


def test_extreme_single_event() -> None:
    body = body_of(render([extreme_event()], everyone(TEAMS)))
    facts = next(element for element in body if element["type"] == "FactSet")["facts"]
    assert len(facts) <= 20
    assert any(element.get("text") == "… and 40 more changes" for element in body)
