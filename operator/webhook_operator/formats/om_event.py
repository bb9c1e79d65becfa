"""The ``openMetadataEvent`` payload shape: a ChangeEvent exactly as OpenMetadata's own generic publisher posts it.

Receivers written against OpenMetadata deserialise its ``ChangeEvent`` schema strictly (``additionalProperties:
false``), so this body adds nothing: no ``eventId``, no ``webhookName``, no list document, one event per request.
A recent OpenMetadata server re-reads events from its ``change_event`` table before posting them and so sends
``entity`` as JSON *text* (examples/events/README.md, "Shapes that surprise people" 3); this shape does the same for
every event, whichever encoding the event arrived in, so receivers see one encoding. Every other field the event
carried is passed on unchanged.

The synthetic test event (``eventType: webhookTest``) is not a valid OpenMetadata event type, so in this shape it is
sent as ``entityNoChange`` — OpenMetadata's own type for "nothing changed" — and says it is a test where the schema
allows free text: ``entityType`` stays ``webhookTest`` and ``userName`` names who asked. Its non-schema ``test``
field is dropped (the ``X-Webhook-Operator-Test`` header still marks the request).
"""

from __future__ import annotations

from typing import Any

from webhook_operator.api.encoding import compact_json, compact_json_text
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.operations import TEST_EVENT_TYPE

#: OpenMetadata's event type for a change that changed nothing; the test event is sent as one.
TEST_AS_EVENT_TYPE = "entityNoChange"


def openmetadata_event(event: ChangeEvent) -> dict[str, Any]:
    """The event as OpenMetadata's ``ChangeEvent`` document, ``entity`` as JSON text."""
    wire = event.wire_for_encoding()
    document = {key: value for key, value in wire.items() if key != "entity"}
    if event.entity is not None:
        document["entity"] = compact_json_text(event.entity)
    if event.event_type == TEST_EVENT_TYPE:
        document["eventType"] = TEST_AS_EVENT_TYPE
        document.pop("test", None)
    return document


def openmetadata_event_body(event: ChangeEvent) -> bytes:
    return compact_json(openmetadata_event(event))
