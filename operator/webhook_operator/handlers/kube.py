"""Kubernetes reads the operator needs besides kopf's watches: the API client, referenced Secrets (cached, kept
fresh by the Secret watch), and the initial list of Webhooks that gates readiness.

The official client is synchronous, so every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from webhook_operator.api.crd import GROUP, PLURAL, VERSION
from webhook_operator.reconcile import Reconciler, Resource, SecretUnavailable


def api_client() -> k8s.ApiClient:
    """In-cluster credentials when running in a pod, else KUBECONFIG (the same source kopf uses)."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        return k8s.ApiClient()
    except k8s_config.ConfigException:
        return cast(k8s.ApiClient, k8s_config.new_client_from_config())  # type: ignore[no-untyped-call]


def resource_of(body: Mapping[str, Any]) -> Resource:
    meta = body["metadata"]
    return Resource(
        namespace=str(meta["namespace"]), name=str(meta["name"]), uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0), spec=dict(body.get("spec") or {}),
        status=dict(body.get("status") or {}) or None,
    )  # fmt: skip


def decode_secret(body: Mapping[str, Any]) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (body.get("data") or {}).items()}
    values.update(body.get("stringData") or {})
    return values


class SecretCache:
    """Secrets referenced by Webhooks: read once on first use, then updated by the Secret watch."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self._core = k8s.CoreV1Api(api)
        self._values: dict[tuple[str, str], dict[str, str] | None] = {}

    def put(self, namespace: str, name: str, values: dict[str, str] | None) -> None:
        self._values[(namespace, name)] = values

    def drop(self, namespace: str, name: str) -> None:
        self._values.pop((namespace, name), None)

    async def read(self, namespace: str, name: str) -> Mapping[str, str] | None:
        key = (namespace, name)
        if key not in self._values:
            self._values[key] = await asyncio.to_thread(self._get, namespace, name)
        return self._values[key]

    def _get(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise SecretUnavailable(f"cannot read Secret {namespace}/{name}: HTTP {exc.status}") from exc
        return decode_secret({"data": secret.data or {}})


async def apply(reconciler: Reconciler, body: Mapping[str, Any]) -> None:
    """Register a Webhook from a kopf handler: a Secret that cannot be read right now is retried by kopf in 5 s."""
    try:
        await reconciler.apply(resource_of(body))
    except SecretUnavailable as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from exc


async def list_webhooks(api: k8s.ApiClient, namespaces: tuple[str, ...]) -> list[Resource]:
    custom = k8s.CustomObjectsApi(api)

    def fetch() -> list[Mapping[str, Any]]:
        items: list[Mapping[str, Any]] = []
        scopes: tuple[str | None, ...] = namespaces or (None,)
        for namespace in scopes:
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"limit": 500}
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
