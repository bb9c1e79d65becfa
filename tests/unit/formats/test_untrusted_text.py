"""Event-derived text is data, never chat markup: whoever can edit metadata in OpenMetadata (a description, a display
name, a tag, a user name) must not be able to ping a channel, mention a user or plant a link through a chat webhook.

One hostile event carries every platform's mention and link syntax in each untrusted place (FQN, userName, changed
field names and values, tag names, owner names); each chat format must render it as literal text, keep the
operator's own entity link working, and leave ordinary names (unicode, quotes, ``&``) readable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from support.events import event, raw
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookType
from webhook_operator.formats.googlechat import GoogleChatFormatter
from webhook_operator.formats.msteams import MSTeamsFormatter
from webhook_operator.formats.slack import SlackFormatter

from ._helpers import UI, entity_of, everyone

#: Slack (``<!channel>``, ``<!here>``, ``<@U…>``, ``<url|text>``, plain ``@channel``), Google Chat (``<users/all>``,
#: ``<users/123>``, ``<url|text>``), Teams (``[text](url)``, ``<at>`` mentions, ``**bold**``), CommonMark autolinks.
HOSTILE = (
    "<!channel> <!here> <@U123> @channel <users/all> <users/123> <https://evil.example|click> "
    "[click](https://evil.example) <at>everyone</at> <https://evil.example> **loud**"
)
FQN = f"svc.db.schema.{HOSTILE}"
URL = f"{UI}/table/{quote(FQN, safe='')}"
#: The entity links the operator builds itself for the two batches below (sample #23 is the second event).
OWN_URLS = (URL, f"{UI}/table/{quote('postgres_crm.crm.sales_jp.顧客マスタ', safe='')}")


def hostile_event() -> ChangeEvent:
    data = raw(10)
    data["entityFullyQualifiedName"] = FQN
    data["userName"] = HOSTILE
    tag = json.dumps([{"tagFQN": f"PII.{HOSTILE}", "name": HOSTILE}])
    data["changeDescription"] = {
        "fieldsAdded": [{"name": "tags", "newValue": tag}],
        "fieldsUpdated": [
            {"name": "description", "oldValue": "old", "newValue": HOSTILE},
            {"name": f"extension.{HOSTILE}", "oldValue": HOSTILE, "newValue": "x"},
        ],
        "fieldsDeleted": [],
        "previousVersion": 0.5,
    }
    entity = entity_of(10)
    entity.update(displayName=HOSTILE, description=HOSTILE, owners=[{"type": "user", "name": HOSTILE}])
    data["entity"] = entity
    return ChangeEvent.model_validate(data)


def ordinary_event() -> ChangeEvent:
    data = raw(10)
    data["entityFullyQualifiedName"] = 'svc.db."O\'Brien & Co".顧客_orders'
    data["userName"] = "zoë.o'brien"
    return ChangeEvent.model_validate(data)


BATCHES = {"single": [hostile_event()], "batch": [hostile_event(), event(23)]}


def strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every (key, string) pair in a rendered message."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from strings(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item, key)
    elif isinstance(value, str):
        yield key, value


def angle_tokens(text: str) -> list[str]:
    return re.findall(r"<[^<>]*>", text)


# -- Slack ------------------------------------------------------------------------------------------------------


def slack(events: list[ChangeEvent]) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(SlackFormatter().render(events, everyone(WebhookType.SLACK)).body)
    return message


def mrkdwn_objects(message: dict[str, Any]) -> list[dict[str, Any]]:
    objects = [block["text"] for block in message["blocks"] if block["type"] == "section"]
    objects += [element for block in message["blocks"] if block["type"] == "context" for element in block["elements"]]
    return objects


@pytest.mark.parametrize("events", BATCHES.values(), ids=BATCHES.keys())
def test_slack_renders_hostile_text_literally(events: list[ChangeEvent]) -> None:
    message = slack(events)
    mrkdwn = [message["text"], *(obj["text"] for obj in mrkdwn_objects(message))]
    for text in mrkdwn:  # the only <…> a reader's client parses is the operator's own link
        assert all(token.startswith(tuple(f"<{url}|" for url in OWN_URLS)) for token in angle_tokens(text)), text
    # verbatim: Slack must not auto-link URLs or turn "@channel" into a mention inside our mrkdwn
    assert all(obj["type"] == "mrkdwn" and obj.get("verbatim") is True for obj in mrkdwn_objects(message))
    sections = [block["text"]["text"] for block in message["blocks"] if block["type"] == "section"]
    assert f"<{URL}|svc.db.schema.&lt;!channel&gt;" in sections[0]  # the entity link still works


# -- Google Chat ------------------------------------------------------------------------------------------------

CARD_TAGS = re.compile(r'^(<b>|</b>|<br>|</a>|<a href="(' + "|".join(map(re.escape, OWN_URLS)) + ')">)$')


def chat(events: list[ChangeEvent]) -> dict[str, Any]:
    body = GoogleChatFormatter().render(events, everyone(WebhookType.GOOGLE_CHAT)).body
    message: dict[str, Any] = json.loads(body)
    return message


@pytest.mark.parametrize("events", BATCHES.values(), ids=BATCHES.keys())
def test_google_chat_renders_hostile_text_literally(events: list[ChangeEvent]) -> None:
    message = chat(events)
    card = message["cardsV2"][0]["card"]
    # text-message syntax: <users/all>, <users/123>, <url|text> must not survive in the top-level text or header
    for text in (message["text"], card["header"]["title"], card["header"]["subtitle"]):
        assert angle_tokens(text) == [] and "[click](" not in text, text
    # card text is Chat's HTML subset: only the tags the format itself writes
    for key, text in strings(card["sections"]):
        if key == "url":
            assert text in OWN_URLS
            continue
        assert all(CARD_TAGS.match(token) for token in angle_tokens(text)), (key, text)
    link = f'<a href="{URL}">svc.db.schema.&lt;!channel&gt;'
    assert any(text.startswith(link) for _, text in strings(card["sections"]))  # the entity link still works


# -- Microsoft Teams --------------------------------------------------------------------------------------------


def teams(events: list[ChangeEvent]) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(MSTeamsFormatter().render(events, everyone(WebhookType.MSTEAMS)).body)
    return message


def teams_texts(message: dict[str, Any]) -> list[str]:
    """TextBlock text and Fact title/value: the markdown-rendered strings of an Adaptive Card in Teams."""
    card = message["attachments"][0]["content"]
    return [text for key, text in strings(card["body"]) if key in {"text", "title", "value"}]


@pytest.mark.parametrize("events", BATCHES.values(), ids=BATCHES.keys())
def test_teams_renders_hostile_text_literally(events: list[ChangeEvent]) -> None:
    message = teams(events)
    texts = teams_texts(message)
    for text in texts:
        links = re.findall(r"\]\(([^)]*)\)", text)
        assert all(link in OWN_URLS for link in links), text  # markdown links: only the operator's own
        assert "<" not in text and ">" not in text, text  # <at> mentions, <url> autolinks
        assert "**" not in text, text
    card = message["attachments"][0]["content"]
    if len(events) == 1:
        assert card["actions"][0]["url"] == URL
    else:
        assert any(text.startswith("Table [svc.db.schema.") and f"]({URL})" in text for text in texts)


# -- ordinary names read as before ------------------------------------------------------------------------------


def test_ordinary_names_read_correctly() -> None:
    source = [ordinary_event()]
    name = 'svc.db."O\'Brien & Co".顧客_orders'
    slack_message = slack(source)
    assert slack_message["blocks"][0]["text"]["text"].startswith(f"Table {name} was updated by zoë.o'brien")
    assert 'svc.db."O\'Brien &amp; Co".顧客_orders' in slack_message["text"]
    chat_message = chat(source)
    assert chat_message["text"] == f"Table {name} was updated by zoë.o'brien"
    teams_message = teams(source)
    assert teams_texts(teams_message)[0] == f"Table {name} was updated by zoë.o'brien"
    assert teams_texts(teams_message)[2:4] == ["tags", "Tier.Tier1 → Tier.Tier2"]
