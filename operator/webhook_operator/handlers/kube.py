"""Kubernetes reads the operator needs besides kopf's watches: the API client, referenced Secrets (cached, kept
fresh by the Secret watch), and the initial list of Webhooks that gates delivery (not the intake).

The official client is synchronous, so every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from webhook_operator.api.crd import GROUP, PLURAL, VERSION
from webhook_operator.reconcile import (
    Reconciler,
    Resource,
    SecretAccessDenied,
    SecretData,
    SecretUnavailable,
    opted_in,
)


def api_client() -> k8s.ApiClient:
    """In-cluster credentials when running in a pod, else KUBECONFIG (the same source kopf uses)."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        return k8s.ApiClient()
    except k8s_config.ConfigException:
        return cast(k8s.ApiClient, k8s_config.new_client_from_config())  # type: ignore[no-untyped-call]


def resource_of(body: Mapping[str, Any], previous_spec: Mapping[str, Any] | None = None) -> Resource:
    """``previous_spec`` is kopf's diff base on a spec update (the last spec the operator handled), for the change
    description."""
    meta = body["metadata"]
    return Resource(
        namespace=str(meta["namespace"]), name=str(meta["name"]), uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0), spec=dict(body.get("spec") or {}),
        status=dict(body.get("status") or {}) or None,
        previous_spec=dict(previous_spec) if previous_spec is not None else None,
        managed_fields=list(meta.get("managedFields") or ()),
    )  # fmt: skip


def decode_secret(body: Mapping[str, Any]) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (body.get("data") or {}).items()}
    values.update(body.get("stringData") or {})
    return values


def secret_data(body: Mapping[str, Any]) -> SecretData:
    """A Secret object (watch body or GET result) as the reconciler needs it. The values of a Secret that has not
    opted in are never decoded or kept: only its labels, so the reconciler can say what is missing."""
    labels = {str(k): str(v) for k, v in ((body.get("metadata") or {}).get("labels") or {}).items()}
    return SecretData(labels=labels, values=decode_secret(body) if opted_in(labels) else {})


class SecretCache:
    """Secrets referenced by Webhooks: read once on first use, then kept fresh by the watch of opted-in Secrets.

    The watch selects ``SECRET_OPT_IN_SELECTOR`` on the API server, so a Secret that loses its label arrives as
    DELETED, and one that never had it is never seen. Anything that is not a live opted-in Secret is therefore
    dropped, and the next read GETs the real state (label checked again) instead of trusting a cached value."""

    _REREADS = 3

    def __init__(self, api: k8s.ApiClient) -> None:
        self._core = k8s.CoreV1Api(api)
        self._values: dict[tuple[str, str], SecretData | None] = {}
        self._epochs: dict[tuple[str, str], int] = {}

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event for a referenced Secret."""
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        data = secret_data(body)
        if event_type == "DELETED" or not opted_in(data.labels):
            self.drop(namespace, name)  # deleted, or no longer selected (label removed or changed): re-read
        else:
            self.put(namespace, name, data)

    def put(self, namespace: str, name: str, values: SecretData | None) -> None:
        key = (namespace, name)
        self._epochs[key] = self._epochs.get(key, 0) + 1
        self._values[key] = values

    def drop(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._epochs[key] = self._epochs.get(key, 0) + 1
        self._values.pop(key, None)

    async def read(self, namespace: str, name: str) -> SecretData | None:
        key = (namespace, name)
        for _ in range(self._REREADS):
            if key in self._values:
                return self._values[key]
            epoch = self._epochs.get(key, 0)
            value = await asyncio.to_thread(self._get, namespace, name)
            if self._epochs.get(key, 0) == epoch:  # no watch event meanwhile: the GET is current
                self._values[key] = value
                return value
        return value  # the Secret keeps changing: use the latest GET, uncached; its next event re-applies

    async def refresh(self, keep: Callable[[str, str], bool]) -> list[tuple[str, str]]:
        """Forget the cached Secrets ``keep`` rejects (no longer referenced), re-read the others, and return those
        whose labels or values changed (now cached as read).

        Closes the one gap of a watch: kopf re-lists after each watch timeout, and a Secret that lost its label
        between the end of one watch and the next list is simply absent from the list, with no DELETED event, so
        its cached value would stay in use until its next change. A periodic re-read bounds that to one period."""
        changed: list[tuple[str, str]] = []
        for key in list(self._values):
            if not keep(*key):
                self.drop(*key)
                continue
            epoch = self._epochs.get(key, 0)
            try:
                fresh = await asyncio.to_thread(self._get, *key)
            except SecretUnavailable:
                continue  # API trouble: keep what we have; the next period tries again
            if self._epochs.get(key, 0) == epoch and key in self._values and self._values[key] != fresh:
                self.put(*key, fresh)
                changed.append(key)
        return changed

    def _get(self, namespace: str, name: str) -> SecretData | None:
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise SecretUnavailable(f"cannot read Secret {namespace}/{name}: HTTP {exc.status}") from exc
        labels = (secret.metadata.labels if secret.metadata else None) or {}
        return secret_data({"metadata": {"labels": labels}, "data": secret.data or {}})


class NoSecretAccess:
    """The reader when the operator runs with ``--read-secrets=false`` (no Secret RBAC): every reference is a
    configuration error that says how to grant access, instead of a retry loop on HTTP 403."""

    async def read(self, namespace: str, name: str) -> SecretData | None:
        raise SecretAccessDenied(
            "the operator runs without access to Secrets (--read-secrets=false); install it with watchNamespaces "
            "or rbac.clusterWideSecrets=true to use Secrets"
        )


async def apply(reconciler: Reconciler, body: Mapping[str, Any],
                previous_spec: Mapping[str, Any] | None = None) -> None:  # fmt: skip
    """Register a Webhook from a kopf handler: a Secret that cannot be read right now is retried by kopf in 5 s."""
    try:
        await reconciler.apply(resource_of(body, previous_spec))
    except SecretUnavailable as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from exc


#: Seconds one page of the Webhook list may take: an API server that stops answering (a partition) must fail the
#: attempt, which start-up retries, instead of hanging the list forever.
LIST_TIMEOUT = 30


async def list_webhooks(api: k8s.ApiClient, namespaces: tuple[str, ...]) -> list[Resource]:
    custom = k8s.CustomObjectsApi(api)

    def fetch() -> list[Mapping[str, Any]]:
        items: list[Mapping[str, Any]] = []
        scopes: tuple[str | None, ...] = namespaces or (None,)
        for namespace in scopes:
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"limit": 500, "_request_timeout": LIST_TIMEOUT}
                if token:
                    kwargs["_continue"] = token
                if namespace is None:
                    page = cast(dict[str, Any], custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs))
                else:
                    page = cast(
                        dict[str, Any],
                        custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kwargs),
                    )
                items.extend(page.get("items", []))
                token = page.get("metadata", {}).get("continue")
                if not token:
                    break
        return items

    return [resource_of(item) for item in await asyncio.to_thread(fetch)]
