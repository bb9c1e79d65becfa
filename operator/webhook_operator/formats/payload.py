"""The Generic payload: each event as the seed's payload object, and the batch document around them.

Two formatters send these objects: Generic always, Custom without a template (exactly Generic's body) and as what
its templates see. Formatters never import one another (an import-linter independence contract), so the one piece
they share lives here, outside both, instead of in ``generic``; ``generic`` owns the Generic format (its shape is
documented there) and is nothing but this document, serialised. The chat formats never use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from webhook_operator.api.events import ChangeEvent
from webhook_operator.formats._common import require_events, resolve_recipients, wants_recipients
from webhook_operator.formats.base import FormatError, RenderContext

_SEED_KEYS = ("eventType", "timestamp", "entityType", "entityId", "entityFullyQualifiedName", "userName", "entity")


def event_payload(event: ChangeEvent, ctx: RenderContext) -> dict[str, Any]:
    """One event as the seed's payload object: its keys first in the seed's order, then every other event field
    (``id`` for receivers written against OpenMetadata's own ChangeEvent, versions, domains, impersonatedBy, fields
    this operator does not know). No ``signature``: the body is what gets signed, so the signature travels in a
    header. ``recipients`` only when a sendTo* flag is set, per event because each event has its own entity."""
    wire = event.wire()
    payload: dict[str, Any] = {"eventId": event.id}
    payload.update((key, wire[key]) for key in _SEED_KEYS if key in wire)
    if "changeDescription" in wire:
        payload["changeDescription"] = wire["changeDescription"]
    payload["webhookName"] = ctx.webhook_name
    payload.update((key, value) for key, value in wire.items() if key not in payload)
    payload.pop("signature", None)
    payload.pop("recipients", None)
    if wants_recipients(ctx):
        payload["recipients"] = resolve_recipients(event, ctx).as_json()
    return payload


def generic_document(events: Sequence[ChangeEvent], ctx: RenderContext) -> Any:
    """batchSize 1: the event object itself. batchSize > 1: always OpenMetadata's list shape
    ``{"data": [...], "paging": {"total": n}}``, even for a batch of one, so a receiver parses one shape."""
    require_events(events)
    payloads = [event_payload(event, ctx) for event in events]
    if ctx.batch_size == 1:
        if len(payloads) != 1:
            raise FormatError(f"batchSize is 1 but the batch holds {len(payloads)} events")
        return payloads[0]
    return {"data": payloads, "paging": {"total": len(payloads)}}
