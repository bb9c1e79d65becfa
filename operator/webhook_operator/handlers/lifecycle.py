"""Start-up and clean-up: kopf settings for GitOps, and the operator's component graph in kopf's memo.

kopf's defaults write ``kopf.zalando.org/*`` annotations, post an Event per handler run and add finalizers; here
progress and diff-base annotations use the project's own prefix, kopf posts no Events of its own (the status writer
posts meaningful ones), and there is no peering (one replica owns the SQLite store).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from webhook_operator.config import OperatorConfig
from webhook_operator.handlers import kube
from webhook_operator.handlers.apiauth import KubernetesAuth
from webhook_operator.service import OperatorService

ANNOTATION_PREFIX = "webhook-operator.events.open-metadata.org"


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    settings.posting.enabled = False
    settings.peering.standalone = True
    # No namespace/CRD scanning: the resources are known, and scanning needs cluster-wide list/watch on
    # namespaces and CRDs that least-privilege RBAC does not grant.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    settings.batching.error_delays = (1, 2, 5, 10, 30)


@kopf.on.startup()
async def startup(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    config: OperatorConfig = memo.config
    configure(settings, config)
    api = kube.api_client()
    memo.secret_cache = kube.SecretCache(api) if config.read_secrets else kube.NoSecretAccess()
    api_auth = KubernetesAuth(api) if config.api_auth == "kubernetes" else None  # else: the intake's tokens
    service = OperatorService(config, api=api, secrets=memo.secret_cache, api_auth=api_auth)
    await service.start()
    try:
        # Register every existing Webhook before the intake reports ready, so no accepted event misses a webhook
        # that exists; kopf's resume handlers that follow find them registered and change nothing.
        resources = await kube.list_webhooks(api, config.namespaces)
        await service.initial_sync(resources)
    except BaseException:
        await service.stop()  # kopf retries start-up: free the ports and the store for the next attempt
        raise
    memo.service = service
    logger.info("registered %d webhooks; intake ready", len(resources))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    service: OperatorService | None = getattr(memo, "service", None)
    if service is not None:
        await service.stop()
