"""Generic: the seed's payload object for batchSize 1, OpenMetadata's list shape for batches; compact UTF-8 JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.events import event, raw
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookType
from webhook_operator.formats.base import FormatError
from webhook_operator.formats.generic import GenericFormatter

from ._helpers import FCT, HIGHLIGHTS, batch, ctx, entity_of, everyone, wide_batch

GENERIC = WebhookType.GENERIC
SEED_KEYS = [
    "eventId",
    "eventType",
    "timestamp",
    "entityType",
    "entityId",
    "entityFullyQualifiedName",
    "userName",
    "entity",
    "changeDescription",
    "webhookName",
]


def render(events: list[ChangeEvent], **overrides: Any) -> Any:
    rendered = GenericFormatter().render(events, ctx(GENERIC, **overrides))
    assert rendered.content_type == "application/json"
    return json.loads(rendered.body)


def test_single_event_golden() -> None:
    source = raw(10)
    body = render([event(10)])
    assert list(body)[: len(SEED_KEYS)] == SEED_KEYS  # the seed's fields first, in the seed's order
    assert body == {
        "eventId": source["id"],
        "eventType": "entityUpdated",
        "timestamp": source["timestamp"],
        "entityType": "table",
        "entityId": source["entityId"],
        "entityFullyQualifiedName": FCT,
        "userName": "priya.shah",
        "entity": source["entity"],
        "changeDescription": source["changeDescription"],
        "webhookName": "finance-alerts",
        "id": source["id"],
        "domains": source["domains"],
        "previousVersion": 0.5,
        "currentVersion": 0.6,
    }
    assert "signature" not in body and "recipients" not in body


@pytest.mark.parametrize("number", HIGHLIGHTS)
def test_every_highlight_passes_the_event_on_unchanged(number: int) -> None:
    body = render([event(number)])
    source = raw(number)
    assert body["entity"] == entity_of(number)  # an object even when the server sent JSON text (file 33)
    assert body.get("changeDescription") == source.get("changeDescription")
    for key, value in source.items():
        if key != "entity":
            assert body[key] == value, key


def test_entity_sent_as_json_text_is_an_object() -> None:
    assert isinstance(raw(33)["entity"], str)
    entity = render([event(33)])["entity"]
    assert entity["fullyQualifiedName"] == "airflow_etl.daily_invoice_load"


def test_other_event_fields_are_passed_on() -> None:
    assert render([event(11)])["impersonatedBy"] == raw(11)["impersonatedBy"]
    assert render([event(32)])["recursive"] is True
    assert "incrementalChangeDescription" in render([event(15)])


def test_compact_utf8_bytes() -> None:
    rendered = GenericFormatter().render([event(23)], ctx(GENERIC))
    text = rendered.body.decode("utf-8")
    assert "顧客マスタ" in text and "\\u" not in text  # raw UTF-8, not \u escapes
    assert rendered.body == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False).encode()


def test_signature_never_in_body() -> None:
    data = raw(6) | {"signature": "sha256=abc123"}
    assert "signature" not in render([ChangeEvent.model_validate(data)])


def test_batch_of_one_still_uses_the_list_shape() -> None:
    body = render([event(6)], batch_size=10)
    assert list(body) == ["data", "paging"]
    assert body["paging"] == {"total": 1}
    assert body["data"] == [render([event(6)])]


def test_batch_of_three_keeps_order() -> None:
    events = [event(26), event(27), event(28)]
    body = render(events, batch_size=3)
    assert [item["eventId"] for item in body["data"]] == [e.id for e in events]
    assert body["paging"] == {"total": 3}


def test_batch_of_100_is_not_truncated() -> None:
    events = batch(100)
    body = render(events, batch_size=100)
    assert len(body["data"]) == 100 and body["paging"] == {"total": 100}
    wide = render(wide_batch(3), batch_size=100)
    assert all(len(item["entity"]["columns"]) == 400 for item in wide["data"])


def test_recipients_per_event_only_when_asked() -> None:
    rendered = GenericFormatter().render([event(6), event(35)], everyone(GENERIC, batch_size=10))
    first, second = json.loads(rendered.body)["data"]
    assert first["recipients"] == {
        "owners": [{"type": "user", "name": "ana.ruiz", "id": "3f61dd02-2349-5f91-9b50-7c550accb46f"}],
        "followers": [],
        "admins": [{"type": "user", "name": "admin"}, {"type": "user", "name": "dpo"}],
    }
    assert [f["name"] for f in second["recipients"]["followers"]] == ["marco.rossi"]
    assert list(first)[-1] == "recipients"
    assert "recipients" not in render([event(6)], admins=("admin",))  # admins known but sendToAdmins off


def test_empty_batch_and_batch_size_mismatch_are_format_errors() -> None:
    with pytest.raises(FormatError, match="empty batch"):
        GenericFormatter().render([], ctx(GENERIC))
    with pytest.raises(FormatError, match="batchSize is 1 but the batch holds 2 events"):
        GenericFormatter().render([event(6), event(7)], ctx(GENERIC))
