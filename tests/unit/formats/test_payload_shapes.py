"""``webhookConfig.payloadShape``: the seed's body (default, unchanged), OpenMetadata's own ChangeEvent, the list.

The ``openMetadataEvent`` body is checked with OpenMetadata's own generated model (``ChangeEvent``, extra keys
forbidden) from the pinned ``openmetadata-ingestion`` wheel, for every sample event and for the test event, so a
receiver that deserialises OpenMetadata's schema strictly accepts what we send.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from support.events import all_events, event, raw
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import PayloadShape, WebhookSpec, WebhookType
from webhook_operator.formats.base import FormatError
from webhook_operator.formats.om_event import TEST_AS_EVENT_TYPE
from webhook_operator.formats.registry import formatter_for

from ._helpers import ctx

OM = PayloadShape.OPENMETADATA_EVENT


def render(kind: WebhookType, events: list[ChangeEvent], **overrides: Any) -> Any:
    return json.loads(formatter_for(kind).render(events, ctx(kind, **overrides)).body)


@pytest.mark.parametrize("number", range(1, 41))
def test_openmetadata_event_passes_openmetadatas_own_strict_model(number: int, openmetadata_change_event: Any) -> None:
    body = render(WebhookType.GENERIC, [event(number)], payload_shape=OM, batch_size=10)
    openmetadata_change_event.model_validate(body)  # raises on any added key, wrong type or unknown eventType
    source = raw(number)
    assert set(body) <= set(source), f"keys added to the event: {set(body) - set(source)}"
    assert isinstance(body["entity"], str), "entity goes as JSON text, as OpenMetadata's publisher sends it"
    entity = source["entity"] if isinstance(source["entity"], dict) else json.loads(source["entity"])
    assert json.loads(body["entity"]) == entity
    for key in set(source) - {"entity"}:
        assert body.get(key, None) == source[key] or source[key] is None, key


def test_the_seed_payload_does_not_pass_openmetadatas_model(openmetadata_change_event: Any) -> None:
    """The reason the shape exists: our default body adds eventId/webhookName, which a strict receiver refuses."""
    with pytest.raises(ValidationError, match="webhookName"):
        openmetadata_change_event.model_validate(render(WebhookType.GENERIC, [event(1)], batch_size=1))


def test_openmetadata_event_test_delivery_uses_an_openmetadata_event_type(openmetadata_change_event: Any) -> None:
    from webhook_operator.delivery.operations import synthetic_test_event
    from webhook_operator.delivery.target import WebhookTarget

    spec = WebhookSpec.model_validate({
        "webhookType": "Generic", "eventFilters": [{"eventType": "entityCreated"}],
        "webhookConfig": {"endpoint": "http://127.0.0.1:9/", "payloadShape": "openMetadataEvent"},
    })  # fmt: skip
    target = WebhookTarget(key="team-a/hook", spec=spec)
    body = render(WebhookType.GENERIC, [synthetic_test_event(target, "alice", 1_767_225_600.0)], payload_shape=OM)
    openmetadata_change_event.model_validate(body)
    assert body["eventType"] == TEST_AS_EVENT_TYPE == "entityNoChange"
    assert body["entityType"] == "webhookTest" and body["userName"] == "alice"
    assert "test" not in body


def test_openmetadata_event_is_one_event_per_request() -> None:
    with pytest.raises(FormatError, match="one event per request"):
        formatter_for(WebhookType.GENERIC).render([event(1), event(2)], ctx(WebhookType.GENERIC, payload_shape=OM))


def test_custom_without_template_follows_the_shape() -> None:
    generic = formatter_for(WebhookType.GENERIC).render([event(6)], ctx(WebhookType.GENERIC, payload_shape=OM))
    custom = formatter_for(WebhookType.CUSTOM).render([event(6)], ctx(WebhookType.CUSTOM, payload_shape=OM))
    assert custom.body == generic.body


@pytest.mark.parametrize("batch_size", [1, 10])
def test_list_shape_for_every_batch(batch_size: int) -> None:
    events = all_events()[:1] if batch_size == 1 else all_events()[:3]
    body = render(WebhookType.GENERIC, events, payload_shape=PayloadShape.LIST, batch_size=batch_size)
    assert body["paging"] == {"total": len(events)}
    assert [item["eventId"] for item in body["data"]] == [e.id for e in events]
    assert all(item["webhookName"] == "finance-alerts" for item in body["data"])


def test_seed_shape_is_unchanged_by_default() -> None:
    assert ctx(WebhookType.GENERIC).payload_shape is PayloadShape.SEED
    one = render(WebhookType.GENERIC, [event(1)], batch_size=1)
    assert one["eventId"] == event(1).id and one["webhookName"] == "finance-alerts"
    many = render(WebhookType.GENERIC, [event(1)], batch_size=10)
    assert many["paging"] == {"total": 1}


def _spec(kind: str, shape: str, **config: Any) -> WebhookSpec:
    return WebhookSpec.model_validate({
        "webhookType": kind, "eventFilters": [{"eventType": "entityCreated"}], "batchSize": 10,
        "webhookConfig": {"endpoint": "http://127.0.0.1:9/", "payloadShape": shape, **config},
    })  # fmt: skip


def test_openmetadata_event_delivers_one_event_per_attempt_whatever_batch_size_says() -> None:
    assert _spec("Generic", "openMetadataEvent").delivery_batch_size == 1
    assert _spec("Custom", "openMetadataEvent").delivery_batch_size == 1
    assert _spec("Generic", "list").delivery_batch_size == 10
    assert _spec("Generic", "seed").delivery_batch_size == 10


@pytest.mark.parametrize("kind", ["Slack", "MSTeams", "GoogleChat"])
def test_shape_is_refused_where_the_format_has_its_own_body(kind: str) -> None:
    with pytest.raises(ValidationError, match=r"webhookConfig.payloadShape"):
        _spec(kind, "openMetadataEvent")
    assert _spec(kind, "seed").webhook_config.payload_shape is PayloadShape.SEED


def test_shape_is_refused_for_a_custom_template() -> None:
    with pytest.raises(ValidationError, match=r"webhookConfig.payloadShape"):
        _spec("Custom", "list", payloadTemplate="{{ event.eventType }}")


def test_models_wheel_is_pinned_by_hash() -> None:
    pins = (Path(__file__).resolve().parents[3] / "requirements" / "openmetadata-models.txt").read_text()
    assert "openmetadata-ingestion==2.0.7.0" in pins and "--hash=sha256:" in pins
