"""The Generic payload: each event as the seed's payload object, and the batch document around them.

Two formatters send these objects: Generic always, Custom without a template (exactly Generic's body) and as what
its templates see. Formatters never import one another (an import-linter independence contract), so the one piece
they share lives here, outside both, instead of in ``generic``; ``generic`` owns the Generic format (its shape is
documented there) and is nothing but this document, serialised. The chat formats never use it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from webhook_operator.api.encoding import compact_json
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import PayloadShape
from webhook_operator.formats._common import require_events, resolve_recipients, wants_recipients
from webhook_operator.formats.base import FormatError, RenderContext
from webhook_operator.formats.om_event import openmetadata_event, openmetadata_event_body

_SEED_KEYS = ("eventType", "timestamp", "entityType", "entityId", "entityFullyQualifiedName", "userName", "entity")
#: Keys ``event_payload`` writes itself or drops, so never copied from the event's other fields.
_OWN_KEYS = frozenset(("eventId", *_SEED_KEYS, "changeDescription", "webhookName", "signature", "recipients"))
#: Events whose encoded payload parts are kept (see ``generic_body``). A fan-out renders one event for every
#: matching webhook within a few milliseconds, so a small window (the last 1,024 events encoded) is enough; bounded
#: because the parts are as large as the event (typically 1-20 KB: ~10 MB for 1,024 of them).
SPLICE_CACHE_SIZE = 1024


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


def _single(events: Sequence[ChangeEvent], ctx: RenderContext) -> bool:
    """Whether the body is one event object rather than the list document: per webhook, never per batch, so a
    receiver always parses one shape (the list shape even for a batch of one)."""
    if ctx.payload_shape is PayloadShape.OPENMETADATA_EVENT:
        if len(events) != 1:
            raise FormatError(f"payloadShape openMetadataEvent is one event per request; the batch has {len(events)}")
        return True
    if ctx.payload_shape is PayloadShape.LIST:
        return False
    if ctx.batch_size == 1 and len(events) != 1:
        raise FormatError(f"batchSize is 1 but the batch holds {len(events)} events")
    return ctx.batch_size == 1


def generic_document(events: Sequence[ChangeEvent], ctx: RenderContext) -> Any:
    """The seed shape: batchSize 1, the event object itself; batchSize > 1, always OpenMetadata's list shape
    ``{"data": [...], "paging": {"total": n}}``, even for a batch of one. ``payloadShape`` may ask for the list shape
    always (``list``) or for the bare ChangeEvent (``openMetadataEvent``)."""
    require_events(events)
    if ctx.payload_shape is PayloadShape.OPENMETADATA_EVENT:
        _single(events, ctx)
        return openmetadata_event(events[0])
    payloads = [event_payload(event, ctx) for event in events]
    if _single(events, ctx):
        return payloads[0]
    return {"data": payloads, "paging": {"total": len(payloads)}}


class _Parts:
    """One event's payload object, encoded once, around the only per-webhook fields: ``head`` is everything up to
    and including ``"webhookName":``, ``tail`` everything after its value without the closing brace (``recipients``,
    when a webhook wants them, goes last, just before it)."""

    __slots__ = ("event", "head", "tail")

    def __init__(self, event: ChangeEvent) -> None:
        wire = event.wire_for_encoding()  # only encoded below, never handed out
        head: dict[str, Any] = {"eventId": event.id}
        head.update((key, wire[key]) for key in _SEED_KEYS if key in wire)
        if "changeDescription" in wire:
            head["changeDescription"] = wire["changeDescription"]
        tail = {key: value for key, value in wire.items() if key not in _OWN_KEYS}
        self.event = event  # held, so that the id() keying the cache cannot be reused while the entry lives
        self.head = compact_json(head)[:-1] + b',"webhookName":'
        self.tail = b"," + compact_json(tail)[1:-1] if tail else b""


_parts: OrderedDict[int, _Parts] = OrderedDict()
#: ``compact_json`` of webhook names, the other per-body encoding: one per webhook, so this holds about one entry per
#: registered webhook; bounded by clearing (an entry costs one encoding to rebuild).
_names: dict[str, bytes] = {}
_NAMES_SIZE = 20_000


def _encoded_name(name: str) -> bytes:
    encoded = _names.get(name)
    if encoded is None:
        if len(_names) >= _NAMES_SIZE:
            _names.clear()
        encoded = _names[name] = compact_json(name)
    return encoded


def _parts_of(event: ChangeEvent) -> _Parts:
    parts = _parts.get(id(event))
    if parts is None or parts.event is not event:
        parts = _Parts(event)
        _parts[id(event)] = parts
        if len(_parts) > SPLICE_CACHE_SIZE:
            _parts.popitem(last=False)
    return parts


def generic_body(events: Sequence[ChangeEvent], ctx: RenderContext) -> bytes:
    """``compact_json(generic_document(events, ctx))``, byte for byte, without re-encoding each event for each
    webhook: an event's payload is encoded once (cached by event object: the delivery layer hands every webhook the
    same parsed event) and only the per-webhook fields are spliced in: ``webhookName`` and, when a sendTo* flag is
    set, ``recipients``. Compact JSON of an object is its members' encodings joined by commas, so the splice is
    exactly what encoding the whole document gives."""
    require_events(events)
    single = _single(events, ctx)
    if ctx.payload_shape is PayloadShape.OPENMETADATA_EVENT:
        return openmetadata_event_body(events[0])
    name = _encoded_name(ctx.webhook_name)
    recipients = wants_recipients(ctx)
    bodies = []
    for event in events:
        parts = _parts_of(event)
        extra = b',"recipients":' + compact_json(resolve_recipients(event, ctx).as_json()) if recipients else b""
        bodies.append(b"".join((parts.head, name, parts.tail, extra, b"}")))
    if single:
        return bodies[0]
    return b'{"data":[' + b",".join(bodies) + b'],"paging":{"total":' + str(len(bodies)).encode() + b"}}"
