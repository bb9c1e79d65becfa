"""Secrets: keep the cache of referenced Secrets fresh, so a rotation, a late-created Secret or a withdrawn opt-in
takes effect without touching the Webhook.

Only Secrets labelled ``events.open-metadata.org/webhook-secret=true`` are watched: the selector is sent to the API
server (kopf's ``settings.watching.label_selectors``), so unlabelled Secrets never reach the operator. It is not a
kopf ``labels=`` handler filter on purpose: that filter would swallow the event that matters most, the one where a
Secret loses its label (the API server sends it as DELETED, with the label already gone), and a withdrawn opt-in
would keep the cached value in use.

A periodic re-read of the cached Secrets (``refresh_loop``) covers what a watch can miss (a change between two
watch streams). The handlers are registered by ``register`` (called by ``handlers.runtime.run``) only when the
operator may read Secrets (``--read-secrets``): a watch without RBAC would fail with 403 forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from webhook_operator.handlers.kube import SecretCache
from webhook_operator.reconcile import SECRET_OPT_IN_SELECTOR
from webhook_operator.service import OperatorService

SECRETS = ("", "v1", "secrets")
REFRESH_INTERVAL = 60.0  # seconds between re-reads of the cached Secrets (see refresh_loop)
log = logging.getLogger(__name__)
_registered: set[int] = set()  # registries already holding the handlers (register is idempotent)


async def secret_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    service: OperatorService = memo.service
    namespace, name = str(body.metadata.namespace), str(body.metadata.name)
    cache: SecretCache = memo.secret_cache
    if not service.reconciler.references(namespace, name):
        cache.drop(namespace, name)  # no longer referenced: do not keep (soon stale) values in memory
        return
    cache.observe(type, body)
    await service.reconciler.secret_changed(namespace, name)


async def refresh_loop(memo: kopf.Memo, interval: float = REFRESH_INTERVAL) -> None:
    """Every ``interval``, re-read the cached Secrets and re-apply the Webhooks of any that changed unseen (see
    ``SecretCache.refresh``): a withdrawn opt-in missed between two watches stops being used within a period."""
    while True:
        await asyncio.sleep(interval)
        service: OperatorService | None = getattr(memo, "service", None)
        if service is None:
            continue
        cache: SecretCache = memo.secret_cache
        try:
            for namespace, name in await cache.refresh(keep=service.reconciler.references):
                log.info("Secret %s/%s changed without a watch event; re-applying its Webhooks", namespace, name)
                await service.reconciler.secret_changed(namespace, name)
        except Exception:  # the next period tries again; never let the loop die silently
            log.exception("re-reading the referenced Secrets failed")


async def start_refresh(memo: kopf.Memo, **_: Any) -> None:
    memo.secret_refresh = asyncio.create_task(refresh_loop(memo), name="secret-refresh")


async def stop_refresh(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] | None = getattr(memo, "secret_refresh", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def select_opted_in(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Start-up: the Secret watch asks the API server for opted-in Secrets only (kopf starts watching after
    start-up handlers)."""
    settings.watching.label_selectors[SECRETS] = SECRET_OPT_IN_SELECTOR


def register(registry: kopf.OperatorRegistry | None = None) -> None:
    """Watch opted-in Secrets; without this call the operator watches no Secrets at all."""
    registry = registry or kopf.get_default_registry()
    if id(registry) in _registered:
        return
    _registered.add(id(registry))
    kopf.on.startup(registry=registry)(select_opted_in)
    kopf.on.startup(registry=registry)(start_refresh)
    kopf.on.cleanup(registry=registry)(stop_refresh)
    kopf.on.event(*SECRETS, registry=registry)(secret_event)
