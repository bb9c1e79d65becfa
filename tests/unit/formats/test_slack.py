"""Slack: readable Block Kit messages that never break a Slack limit (checked with slack_sdk's own models)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

from support.events import all_events, event
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookType
from webhook_operator.formats.base import RenderContext
from webhook_operator.formats.slack import SlackFormatter

from ._helpers import FCT, HIGHLIGHTS, UI, batch, ctx, everyone, extreme_event, wide_batch

SLACK = WebhookType.SLACK


def render(events: list[ChangeEvent], context: RenderContext | None = None) -> dict[str, Any]:
    rendered = SlackFormatter().render(events, context or ctx(SLACK))
    assert rendered.content_type == "application/json"
    message: dict[str, Any] = json.loads(rendered.body)
    assert_valid(message)
    return message


def parse(block: dict[str, Any]) -> Block:
    parsed = Block.parse(block)
    assert parsed is not None, block
    return parsed


def assert_valid(message: dict[str, Any]) -> None:
    """Slack's limits: slack_sdk validates each block (header ≤ 150, section ≤ 3000, context ≤ 10 elements, ...);
    the message-level ones are checked here."""
    assert set(message) == {"text", "blocks"}
    assert isinstance(message["text"], str) and 0 < len(message["text"]) <= 40_000
    assert 0 < len(message["blocks"]) <= 50
    for block in message["blocks"]:
        parse(block).validate_json()
        if block["type"] == "context":
            assert all(len(element["text"]) <= 2000 for element in block["elements"])
    assert len(json.dumps(message, ensure_ascii=False)) <= 40_000


def test_the_validator_bites() -> None:
    """Guard against a no-op check: slack_sdk must reject what Slack rejects."""
    with pytest.raises(SlackObjectFormationError):
        parse({"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}).validate_json()
    with pytest.raises(SlackObjectFormationError):
        parse({"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}).validate_json()


def section_texts(message: dict[str, Any]) -> list[str]:
    return [block["text"]["text"] for block in message["blocks"] if block["type"] == "section"]


def test_single_event_golden() -> None:
    assert render([event(10)]) == {
        "text": f"Table {FCT} was updated by priya.shah",
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": f"Table {FCT} was updated by priya.shah", "emoji": True},
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*<{UI}/table/{FCT}|{FCT}>*\n"
                    "entityUpdated · v0.5 → v0.6 · 2026-03-04 18:38:03 UTC\n"
                    "• *tags*: Tier.Tier1 → Tier.Tier2",
                    "verbatim": True,
                },
            },
        ],
    }


@pytest.mark.parametrize("number", HIGHLIGHTS)
def test_highlights_are_valid_and_readable(number: int) -> None:
    source = event(number)
    message = render([source], everyone(SLACK))
    assert message["blocks"][0]["type"] == "header"
    assert source.user_name is not None and source.user_name in message["blocks"][0]["text"]["text"]
    (section,) = section_texts(message)
    assert source.event_type in section
    assert message["blocks"][-1]["type"] == "context"  # recipients


def test_owner_change_and_test_result_read_old_to_new() -> None:
    assert "• *owners*: ana.ruiz → FinanceDataTeam" in section_texts(render([event(7)]))[0]
    assert "• *testCaseResult*: Failed: Found nullCount=37" in section_texts(render([event(19)]))[0]


def test_unicode_stays_raw() -> None:
    rendered = SlackFormatter().render([event(23)], ctx(SLACK, ui_base_url=None))
    assert "顧客マスタ".encode() in rendered.body
    assert "*postgres_crm.crm.sales_jp.顧客マスタ*" in section_texts(json.loads(rendered.body))[0]  # no link


def test_mrkdwn_control_characters_are_escaped() -> None:
    (text,) = section_texts(render([event(27)]))
    assert "Owner: &lt;sales-ops@example.com&gt;" in text
    assert "<sales-ops" not in text


def test_all_samples_render_valid_messages() -> None:
    for source in all_events():
        render([source], everyone(SLACK))
        render([source], ctx(SLACK, ui_base_url=None))


def test_batch_of_three() -> None:
    events = [event(6), event(7), event(19)]
    message = render(events, ctx(SLACK, batch_size=3))
    assert message["blocks"][0]["text"]["text"] == "3 OpenMetadata events"
    texts = section_texts(message)
    assert texts[0].startswith(f"Table *<{UI}/table/{FCT}|{FCT}>* was updated by *ana.ruiz*\n")
    assert texts[2].startswith("Test case *<")
    assert message["text"].startswith("3 OpenMetadata events: Table ")


@pytest.mark.parametrize(
    "events", [batch(100), wide_batch(100), [extreme_event()] * 100], ids=["mixed", "wide", "extreme"]
)
def test_batch_of_100_fits_with_a_note(events: list[ChangeEvent]) -> None:
    message = render(events, everyone(SLACK, batch_size=100))
    blocks = message["blocks"]
    shown = len(section_texts(message))
    assert 0 < shown < 100
    notes = [b["elements"][0]["text"] for b in blocks if b["type"] == "context"]
    assert notes[0] == f"… and {100 - shown} more events"
    assert notes[1].startswith("Owners: ")


def test_extreme_single_event_is_truncated_not_invalid() -> None:
    message = render([extreme_event()], everyone(SLACK))
    assert len(message["blocks"][0]["text"]["text"]) == 150
    (text,) = section_texts(message)
    assert len(text) <= 3000
    assert "more change" in text.splitlines()[-1]
    assert "&lt;&amp;&gt;" in text and "<&>" not in text


def test_recipients_context_is_plain_text_names() -> None:
    message = render([event(35)], everyone(SLACK))
    assert message["blocks"][-1] == {
        "type": "context",
        "elements": [
            {
                "type": "mrkdwn",
                "text": "Owners: @priya.shah, team FinanceDataTeam · Followers: @marco.rossi · Admins: @admin, @dpo",
                "verbatim": True,
            }
        ],
    }
    assert message["text"].endswith(
        "\nOwners: @priya.shah, team FinanceDataTeam · Followers: @marco.rossi · Admins: @admin, @dpo"
    )
    assert all(block["type"] != "context" for block in render([event(35)])["blocks"])
