"""Operation requests as annotations: ``events.open-metadata.org/test``, ``/resume``, ``/skip``, ``/redeliver``.

Setting one to a value the operator has not acted on yet asks for that operation (``docs/operations.md``). The
operator never writes or removes these annotations (they may be owned by GitOps); it remembers what it acted on, in
memory and in ``status.handledAnnotations``, so a restart repeats nothing. Only annotation changes (and the first
sight of a Webhook) trigger this handler, never status updates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from webhook_operator.api.crd import GROUP, PLURAL, VERSION
from webhook_operator.api.operations import ANNOTATIONS
from webhook_operator.handlers import kube
from webhook_operator.service import OperatorService


def requested_by(managed_fields: Sequence[Mapping[str, Any]] | None, annotation: str) -> str:
    """Who set ``annotation``: the field manager that owns it in ``metadata.managedFields`` (kubectl-annotate,
    kubectl-client-side-apply, argocd-controller, ...), most recent first. Kubernetes records the manager, not
    the user: the audit log has the user."""
    best: tuple[str, str] | None = None
    for entry in managed_fields or ():
        fields = entry.get("fieldsV1") or {}
        owned = (fields.get("f:metadata") or {}).get("f:annotations") or {}
        if f"f:{annotation}" in owned:
            stamp = str(entry.get("time") or "")
            if best is None or stamp >= best[0]:
                best = (stamp, str(entry.get("manager") or "unknown manager"))
    return f"{best[1]} (annotation)" if best else "annotation"


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="metadata.annotations")
async def operation_requests(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    meta = body.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    if not any(name in annotations for name in ANNOTATIONS.values()):
        return
    service: OperatorService = memo.service
    key = f"{meta['namespace']}/{meta['name']}"
    if not service.reconciler.known(key):  # kopf may run this before the registering handler: register now
        await kube.apply(service.reconciler, body)
    if service.sharing is not None:  # several replicas: only the webhook's owner acts (docs/scale-out.md)
        acts = service.sharing.leases.acts_on(key)
        if acts is False:
            return
        if acts is None:
            raise kopf.TemporaryError(f"{key} is being handed over to this replica", delay=2)
    managed = list(meta.get("managedFields") or [])
    handled = (body.get("status") or {}).get("handledAnnotations")
    await service.annotations.annotations_changed(
        key, str(meta.get("uid") or ""), annotations, handled=handled if isinstance(handled, Mapping) else None,
        who=lambda op: requested_by(managed, ANNOTATIONS[op]),
    )  # fmt: skip
