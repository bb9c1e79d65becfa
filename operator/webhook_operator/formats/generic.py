"""Generic: the event itself, as JSON, for receivers that process metadata changes programmatically.

Shape (built by ``payload.event_payload``, which Custom shares; details in docs/formats.md):

* batchSize 1: the seed's payload object ``{"eventId", "eventType", "timestamp", "entityType", "entityId",
  "entityFullyQualifiedName", "userName", "entity", "changeDescription", "webhookName", ...}`` with ``entity``
  always an object (servers send it as JSON text; the model has parsed it) and every other event field passed on.
* batchSize > 1: ``{"data": [those objects], "paging": {"total": n}}`` even when the batch holds one event: the
  list shape of OpenMetadata's legacy publisher, and one shape per webhook so receivers never guess.

The seed's example body carries a ``"signature"`` field; this body never does. The signature is an HMAC of the
body, so it cannot be inside it: it is sent in the ``X-OpenMetadata-Signature`` header (or the Standard Webhooks
headers) by the delivery layer.

Recipients (sendToAdmins/Owners/Followers): each event object gets ``"recipients": {"owners": [...],
"followers": [...], "admins": [...]}`` (references as ``{"type", "name", "id"}``, deduplicated, deleted ones
dropped) only when at least one flag is set; per event, because each event concerns its own entity.

Compact JSON, UTF-8, non-ASCII kept raw; no size limit is imposed: a generic receiver gets the whole entity.
Each event's object is encoded once and shared by every webhook it goes to; only ``webhookName`` (and
``recipients``) are spliced in per webhook (``payload.generic_body``, byte-identical to encoding the document).
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook_operator.api.events import ChangeEvent
from webhook_operator.formats.base import RenderContext, Rendered
from webhook_operator.formats.payload import generic_body


class GenericFormatter:
    def render(self, events: Sequence[ChangeEvent], ctx: RenderContext) -> Rendered:
        return Rendered(body=generic_body(events, ctx), content_type="application/json")
