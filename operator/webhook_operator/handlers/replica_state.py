"""kopf's handler state per replica, in memory, when several replicas share a PostgreSQL store (issue 15).

kopf remembers what it handled on the object itself: the last handled spec (the diff base) and each handler's
progress, as annotations. With several replicas that memory is shared, and kopf's event batching takes the newest
body of a burst: a replica that reads a Webhook after another one stored its diff base sees nothing to do, so it
never registers the new Webhook or spec (its intake would not route to it) and never hears an annotation request
(whose owner may be exactly that replica). Every replica must handle every change itself, so each keeps that
memory in its own process: after a restart every Webhook is "new" to it once, which the handlers are idempotent
for (the start-up list registers them all anyway, and the annotation requests remember what was handled in
``status.handledAnnotations``). Only kopf's *touch* stays an annotation: it is how kopf wakes itself to retry a
handler after a delay, and a touch by one replica is harmless to the others (their diff base does not change).
"""

from __future__ import annotations

from typing import Any

import kopf

from webhook_operator.api.crd import GROUP

#: kopf's own annotations (the touch, the "managed" marker) keep the operator's prefix.
PREFIX = f"webhook-operator.{GROUP}"


def _uid(body: kopf.Body) -> str:
    return str(body.metadata.uid or f"{body.metadata.namespace}/{body.metadata.name}")


class ReplicaProgressStorage(kopf.AnnotationsProgressStorage):
    """Handler progress (retries, delays) in this process; the touch annotation as kopf writes it."""

    def __init__(self, *, prefix: str = PREFIX) -> None:
        super().__init__(prefix=prefix)
        self._records: dict[tuple[str, str], Any] = {}

    def fetch(self, *, key: Any, body: kopf.Body) -> Any:
        return self._records.get((_uid(body), str(key)))

    def store(self, *, key: Any, record: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        self._records[_uid(body), str(key)] = dict(record)

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        self._records.pop((_uid(body), str(key)), None)


class ReplicaDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """The last handled spec per object, in this process."""

    def __init__(self, *, prefix: str = PREFIX) -> None:
        super().__init__(prefix=prefix, key="last-handled-configuration")
        self._essences: dict[str, Any] = {}

    def fetch(self, *, body: kopf.Body) -> Any:
        return self._essences.get(_uid(body))

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        self._essences[_uid(body)] = essence

    def forget(self, body: kopf.Body) -> None:
        self._essences.pop(_uid(body), None)
