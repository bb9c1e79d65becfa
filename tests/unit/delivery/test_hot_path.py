"""Hot-path shortcuts of the attempt pipeline that must not change what they compute: the delivery id is computed
without building a UUID object (it must stay exactly uuid5: receivers dedupe on it, across an upgrade too), and the
render context is built once per target object."""

from __future__ import annotations

import uuid

from webhook_operator.delivery.attempt import _DELIVERY_NS, delivery_id
from webhook_operator.store.base import QueuedEvent


def test_delivery_id_is_uuid5_of_key_and_batch() -> None:
    for key in ("ns/a", "team-ü/wh-0", "x" * 300):
        for first, last, size in ((1, 1, 1), (7, 19, 10), (2**40, 2**40 + 3, 4)):
            batch = [QueuedEvent(first, 1, "e", b"{}")] + [QueuedEvent(last, 2, "f", b"{}")] * (size - 1)
            expected = uuid.uuid5(_DELIVERY_NS, f"{key}|{first}|{batch[-1].qid}|{size}")
            assert delivery_id(key, batch) == str(expected)
            assert uuid.UUID(delivery_id(key, batch)).version == 5


def test_render_context_is_built_once_per_target_object_and_follows_a_new_one() -> None:
    import dataclasses

    from webhook_operator.api.webhook import WebhookSpec
    from webhook_operator.delivery.request import render_context
    from webhook_operator.delivery.target import WebhookTarget

    spec = WebhookSpec.model_validate({
        "webhookType": "Generic", "eventFilters": [{"eventType": "entityCreated"}],
        "webhookConfig": {"endpoint": "https://x.example"},
    })  # fmt: skip
    target = WebhookTarget(key="ns/a", spec=spec)
    assert render_context(target) is render_context(target)
    assert render_context(target).batch_size == spec.batch_size != 5
    changed = dataclasses.replace(target, spec=spec.model_copy(update={"batch_size": 5}), admins=("root",))
    assert (render_context(changed).batch_size, render_context(changed).admins) == (5, ("root",))
    assert render_context(target).batch_size == spec.batch_size != 5
