"""Start-up and clean-up: kopf settings for GitOps, and the operator's component graph in kopf's memo.

kopf's defaults write ``kopf.zalando.org/*`` annotations, post an Event per handler run and add finalizers; here
progress and diff-base annotations use the project's own prefix, kopf posts no Events of its own (the status writer
posts meaningful ones), and there is no peering (one replica owns the SQLite store).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from webhook_operator import heap
from webhook_operator.config import OperatorConfig
from webhook_operator.handlers import kube
from webhook_operator.handlers.apiauth import KubernetesAuth
from webhook_operator.handlers.replica_state import ReplicaDiffBaseStorage, ReplicaProgressStorage
from webhook_operator.service import OperatorService

ANNOTATION_PREFIX = "webhook-operator.events.open-metadata.org"
#: Webhooks whose kopf handlers run at the same time (kopf's default is unbounded).
KOPF_WORKER_LIMIT = 32


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    if config.store == "postgres":  # several replicas: each handles every change itself (handlers.replica_state)
        settings.persistence.progress_storage = ReplicaProgressStorage(prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = ReplicaDiffBaseStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    settings.posting.enabled = False
    settings.peering.standalone = True
    # No namespace/CRD scanning: the resources are known, and scanning needs cluster-wide list/watch on
    # namespaces and CRDs that least-privilege RBAC does not grant.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    settings.queueing.error_delays = (1, 2, 5, 10, 30)
    # At most this many Webhooks handled at once: a start with 10,000 Webhooks otherwise runs 10,000 handler tasks
    # together, which grows the process by gigabytes and stalls the event loop for seconds (lease renewals late).
    settings.queueing.worker_limit = KOPF_WORKER_LIMIT


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
    try:
        # 1. The store (retried inside; the intake answers 503 until it is open), then the intake accepts.
        await service.start()
        memo.service = service
        logger.info("store open; intake ready; reading the Webhook list")
        # 2. The Webhook list, retried until the API server answers, while the intake already accepts (events are
        # stored unrouted and routed in arrival order once every existing Webhook is registered). This handler
        # waits for it on purpose: kopf starts its watches only when it returns, and kopf resolves the resources
        # it watches once, at that start (scanning is disabled), and gives up after ~1 min of failed requests —
        # started while the API server is away, it would exit, or miss the Webhook CRD for good if its discovery
        # ran just before the CRD was served again. A successful list means the CRD is served.
        await service.sync_webhooks(lambda: kube.list_webhooks(api, config.namespaces))
    except BaseException:
        memo.service = None
        await service.stop()  # kopf retries start-up, or is shutting down (then no cleanup handler runs)
        raise
    # 3. The long-lived state is built: keep the garbage collector from walking it on every full collection.
    logger.debug("garbage collector: %d start-up objects frozen", heap.settle())


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    service: OperatorService | None = getattr(memo, "service", None)
    if service is not None:
        await service.stop()
