"""The only Kubernetes API calls of the status package, made with the official (synchronous) client.

Everything here blocks, so callers run it in a worker thread. A client may be given directly (the caller owns and
closes it) or as a factory; a factory's client is rebuilt after a connection-level failure, which re-reads the
kubeconfig / in-cluster token and lets a writer recover from an API server that moved or restarted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, cast

import urllib3
from kubernetes import client as k8s

from webhook_operator.api.crd import GROUP, PLURAL, VERSION
from webhook_operator.status.schedule import PatchOutcome

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
# (connect, read) seconds: a hung API server must not hold a worker thread for long.
REQUEST_TIMEOUT = (5.0, 15.0)

ClientSource = k8s.ApiClient | Callable[[], k8s.ApiClient]


def classify(exc: BaseException) -> PatchOutcome:
    """What a failed call means for the caller.

    404 → the object is gone. 400/422 → this body is invalid and resending it cannot help. Everything else —
    connection errors, timeouts, 429, 5xx, and also 401/403/409 (credentials being rotated, RBAC not bound yet) — is
    worth retrying later.
    """
    if isinstance(exc, k8s.ApiException):
        if exc.status == 404:
            return PatchOutcome.GONE
        if exc.status in (400, 422):
            return PatchOutcome.REJECTED
        return PatchOutcome.RETRY
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        return PatchOutcome.RETRY
    return PatchOutcome.REJECTED  # a programming error: log it, do not spin on it


def describe(exc: BaseException) -> str:
    """A short, secret-free description (never the response body, which may echo what was sent)."""
    if isinstance(exc, k8s.ApiException):
        return f"HTTP {exc.status} {exc.reason or ''}".strip()
    return f"{type(exc).__name__}: {str(exc)[:300]}"


class Kube:
    """Thread-safe access to one API server through a client or a client factory."""

    def __init__(self, source: ClientSource) -> None:
        self._factory: Callable[[], k8s.ApiClient] | None
        self._client: k8s.ApiClient | None
        if isinstance(source, k8s.ApiClient):
            self._factory, self._client = None, source
        else:
            self._factory, self._client = source, None
        self._lock = threading.Lock()

    def client(self) -> k8s.ApiClient:
        with self._lock:
            if self._client is None:
                assert self._factory is not None
                self._client = self._factory()
            return self._client

    def reset(self) -> None:
        """Drop a factory-made client after a connection failure; the next call builds a fresh one."""
        if self._factory is None:
            return
        with self._lock:
            old, self._client = self._client, None
        if old is not None:
            cast(Any, old).close()  # untyped in the client

    def close(self) -> None:
        if self._factory is not None:
            self.reset()

    def _call(self, fn: Callable[[k8s.ApiClient], Any]) -> Any:
        try:
            return fn(self.client())
        except (urllib3.exceptions.HTTPError, OSError):
            self.reset()
            raise

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch ``status`` through the status subresource. No resourceVersion: the operator alone owns the
        status, so last writer wins and there are no conflicts to retry."""
        self._call(
            lambda c: k8s.CustomObjectsApi(c).patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": status},
                _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            )
        )

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        event = k8s.CoreV1Event.from_dict(body)
        if event is None:
            raise ValueError("empty Event")
        self._call(
            lambda c: k8s.CoreV1Api(c).create_namespaced_event(namespace, event, _request_timeout=REQUEST_TIMEOUT)
        )

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._call(
            lambda c: k8s.CoreV1Api(c).patch_namespaced_event(
                name, namespace, patch, _content_type=MERGE_PATCH, _request_timeout=REQUEST_TIMEOUT
            )
        )
