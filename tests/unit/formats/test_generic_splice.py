"""The Generic body is spliced from per-event parts shared by every webhook: it must be exactly the bytes of
encoding the whole document, for every sample, batch shape, webhook name and recipients setting."""

from __future__ import annotations

from typing import Any

import pytest

from support.events import all_events, event
from webhook_operator.api.encoding import compact_json
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookType
from webhook_operator.formats import payload
from webhook_operator.formats.base import FormatError
from webhook_operator.formats.payload import generic_body, generic_document

from ._helpers import ctx, everyone

NAMES = ("finance-alerts", 'odd "name" \\ with ünïcode \U0001f600')


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("recipients", [False, True])
def test_batch_size_1_is_byte_identical_to_encoding_the_document(name: str, recipients: bool) -> None:
    context = (everyone if recipients else ctx)(WebhookType.GENERIC, webhook_name=name)
    for e in all_events():
        assert generic_body([e], context) == compact_json(generic_document([e], context)), e.id


@pytest.mark.parametrize("size", [1, 2, 10])
@pytest.mark.parametrize("recipients", [False, True])
def test_batches_are_byte_identical_to_encoding_the_document(size: int, recipients: bool) -> None:
    context = (everyone if recipients else ctx)(WebhookType.GENERIC, batch_size=10)
    events = all_events()
    for start in range(0, len(events), size):
        part = events[start : start + size]
        assert generic_body(part, context) == compact_json(generic_document(part, context))


def test_an_event_is_encoded_once_for_many_webhooks_and_each_gets_its_own_name(monkeypatch: Any) -> None:
    built: list[str] = []
    original = payload._Parts.__init__

    def counting(self: Any, e: ChangeEvent) -> None:
        built.append(e.id)
        original(self, e)

    monkeypatch.setattr(payload._Parts, "__init__", counting)
    e = event(1).model_copy()
    bodies = {generic_body([e], ctx(WebhookType.GENERIC, webhook_name=f"wh-{n}")) for n in range(100)}
    assert len(bodies) == 100 and built == [e.id]


def test_fields_the_payload_writes_itself_are_never_copied_from_the_event() -> None:
    e = ChangeEvent.model_validate({**event(1).wire(), "webhookName": "spoofed", "eventId": "spoofed",
                                    "signature": "x", "recipients": {"owners": []}, "zExtra": 1})  # fmt: skip
    context = ctx(WebhookType.GENERIC)
    body = generic_body([e], context)
    assert body == compact_json(generic_document([e], context))
    assert b"spoofed" not in body and b'"signature"' not in body and body.endswith(b',"zExtra":1}')


def test_the_cache_is_bounded_and_never_confuses_two_events() -> None:
    context = ctx(WebhookType.GENERIC)
    for n in range(payload.SPLICE_CACHE_SIZE + 50):
        e = ChangeEvent.model_validate({**event(1).wire(), "id": f"bounded-{n}"})
        assert f'"eventId":"bounded-{n}"'.encode() in generic_body([e], context)
    assert len(payload._parts) <= payload.SPLICE_CACHE_SIZE


def test_batch_size_1_with_two_events_is_refused() -> None:
    with pytest.raises(FormatError, match="batchSize is 1 but the batch holds 2 events"):
        generic_body([event(1), event(2)], ctx(WebhookType.GENERIC))
    with pytest.raises(FormatError, match="empty batch"):
        generic_body([], ctx(WebhookType.GENERIC))


def test_wire_for_encoding_is_wire_for_every_sample() -> None:
    for e in all_events():
        assert e.wire_for_encoding() == e.wire(), e.id
        assert list(e.wire_for_encoding()) == [k for k in e.wire() if k != "entity"] + (["entity"] if e.entity else [])
