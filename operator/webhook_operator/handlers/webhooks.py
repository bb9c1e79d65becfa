"""Webhook resources: create/resume/spec-update register, delete unregisters. Handlers return None so kopf writes
no results into status, and react to ``spec`` only, so labels, annotations and our own status writes never
re-trigger them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from webhook_operator.api.crd import GROUP, PLURAL, VERSION
from webhook_operator.handlers import kube
from webhook_operator.service import OperatorService


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def webhook_changed(body: kopf.Body, memo: kopf.Memo, old: Any = None, **_: Any) -> None:
    # On the spec update handler kopf's ``old`` is the previous *spec* (the handler is scoped to field="spec"); on
    # create and resume it is None.
    service: OperatorService = memo.service
    await kube.apply(service.reconciler, body, old if isinstance(old, Mapping) else None)


# No finalizer: cleanup is local (queue state), so a raw DELETED watch event is enough, and a Webhook deleted while
# the operator was down is purged at the next start-up. Blocking deletion on the operator would buy nothing.
@kopf.on.event(GROUP, VERSION, PLURAL, when=lambda type, **_: type == "DELETED")
async def webhook_deleted(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    service: OperatorService = memo.service
    await service.reconciler.remove(str(meta.namespace), str(meta.name), uid=str(meta.uid or "") or None)
    service.annotations.forget(f"{meta.namespace}/{meta.name}")
