"""``spec.extension`` (OpenMetadata's custom properties, issue 14 item 4): any JSON object, size-bounded, kept
unchanged, and visible to Custom templates as ``webhook.extension``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from support.events import event
from webhook_operator.api.webhook import MAX_EXTENSION_BYTES, PayloadShape, WebhookSpec, WebhookType
from webhook_operator.delivery.request import render_context
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.formats.custom import CustomFormatter

from ._helpers import ctx

EXTENSION = {"costCenter": "CC-2040", "oncall": {"team": "finance-data", "rotation": ["ana", "bo"]}, "tier": 1}


def spec(**overrides: Any) -> dict[str, Any]:
    return {
        "webhookType": "Custom", "eventFilters": [{"eventType": "entityCreated"}],
        "webhookConfig": {"endpoint": "http://127.0.0.1:9/hook"}, **overrides,
    }  # fmt: skip


def test_extension_round_trips_unchanged() -> None:
    model = WebhookSpec.model_validate(spec(extension=EXTENSION))
    assert model.model_dump(by_alias=True, exclude_none=True, mode="json")["extension"] == EXTENSION
    assert WebhookSpec.model_validate(spec()).extension is None


def test_an_oversized_extension_is_refused_naming_the_field() -> None:
    big = {"blob": "x" * MAX_EXTENSION_BYTES}
    with pytest.raises(ValidationError) as info:
        WebhookSpec.model_validate(spec(extension=big))
    error = info.value.errors()[0]
    assert error["loc"] == ("extension",) and "16 KiB" in error["msg"]


def test_templates_see_the_extension_as_webhook_extension() -> None:
    template = (
        '{"cc": {{ webhook.extension.costCenter | tojson }}, "team": {{ webhook.extension.oncall.team | tojson }}}'
    )
    rendered = CustomFormatter().render(
        [event(1)], ctx(WebhookType.CUSTOM, payload_template=template, extension=EXTENSION)
    )
    assert json.loads(rendered.body) == {"cc": "CC-2040", "team": "finance-data"}
    empty = CustomFormatter().render([event(1)], ctx(WebhookType.CUSTOM, payload_template="{{ webhook.extension }}"))
    assert empty.body == b"{}"


def test_the_delivery_context_carries_extension_and_shape() -> None:
    target = WebhookTarget(key="ns/hook", spec=WebhookSpec.model_validate(spec(
        webhookType="Generic", batchSize=10, extension=EXTENSION,
        webhookConfig={"endpoint": "http://127.0.0.1:9/hook", "payloadShape": "openMetadataEvent"},
    )))  # fmt: skip
    context = render_context(target)
    assert context.extension == EXTENSION
    assert context.payload_shape is PayloadShape.OPENMETADATA_EVENT and context.batch_size == 1
