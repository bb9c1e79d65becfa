"""Secrets: keep the cache of referenced Secrets fresh, so a rotation or a late-created Secret takes effect without
touching the Webhook."""

from __future__ import annotations

from typing import Any

import kopf

from webhook_operator.handlers.kube import SecretCache, decode_secret
from webhook_operator.service import OperatorService


@kopf.on.event("", "v1", "secrets")
async def secret_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    service: OperatorService = memo.service
    namespace, name = str(body.metadata.namespace), str(body.metadata.name)
    cache: SecretCache = memo.secret_cache
    if not service.reconciler.references(namespace, name):
        cache.drop(namespace, name)  # no longer referenced: do not keep (soon stale) values in memory
        return
    cache.put(namespace, name, None if type == "DELETED" else decode_secret(body))
    await service.reconciler.secret_changed(namespace, name)
