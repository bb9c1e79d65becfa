"""Operations API authentication by Kubernetes: the caller's own token, TokenReview, then SubjectAccessReview.

A user calls the API with the bearer token of their kubeconfig (``kubectl webhook`` does that). The operator asks
the API server who that is (TokenReview) and whether that identity may do what the route needs to that Webhook
(SubjectAccessReview: ``get`` on ``webhooks`` to read the delivery log, ``patch`` to operate, in the Webhook's
namespace and by name), so RBAC decides — the same RBAC that governs ``kubectl get`` and ``kubectl annotate``.

Positive answers are cached for ``ttl`` seconds (30) under a SHA-256 of the token, never the token itself, so a
busy CLI session costs two API calls per half minute; refusals are not cached, so a new RoleBinding works at once.
A token revoked or a binding removed stops working within ``ttl``.

The API server's service proxy (``kubectl webhook`` without ``--server``) removes the ``Authorization`` header after
authenticating the user itself, so the token may also come in ``X-Webhook-Operator-Authorization``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3
from aiohttp import web
from kubernetes import client as k8s

from webhook_operator.api.crd import GROUP, PLURAL
from webhook_operator.api.operations import PROXY_TOKEN_HEADER
from webhook_operator.intake.auth import CALLER, Caller, unauthorized
from webhook_operator.intake.errors import IntakeError
from webhook_operator.intake.operations import required_access

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = (5.0, 15.0)
_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class User:
    name: str
    uid: str | None = None
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)


def bearer_token(request: web.Request) -> str:
    for header in ("Authorization", PROXY_TOKEN_HEADER):
        value = request.headers.get(header)
        if value is None:
            continue
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized(f"{header} header must be 'Bearer <token>'", "invalid_request")
        return token.strip()
    raise unauthorized("missing bearer token: send your Kubernetes token as Authorization: Bearer <token> "
                       "(kubectl webhook does)")  # fmt: skip


class KubernetesAuth:
    """``Authenticator`` for the operations API (see the module docstring)."""

    def __init__(self, api: k8s.ApiClient, *, ttl: float = 30.0,
                 access: Callable[[web.Request], tuple[str, str, str]] = required_access,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._authn = k8s.AuthenticationV1Api(api)
        self._authz = k8s.AuthorizationV1Api(api)
        self._ttl = ttl
        self._access = access
        self._clock = clock
        self._users: dict[bytes, tuple[float, User]] = {}
        self._grants: dict[tuple[bytes, str, str, str], float] = {}
        self.reviews = 0  # API calls made (tests check the cache)

    async def authenticate(self, request: web.Request) -> None:
        token = bearer_token(request)
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        user = await self._user(token, digest)
        verb, namespace, name = self._access(request)
        await self._authorize(user, digest, verb, namespace, name)

        async def authorize(verb: str, namespace: str, name: str) -> None:
            await self._authorize(user, digest, verb, namespace, name)

        request[CALLER] = Caller(user.name, authorize)

    async def _user(self, token: str, digest: bytes) -> User:
        now = self._clock()
        cached = self._users.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        status = await self._call(self._review, token)
        if not getattr(status, "authenticated", False):
            raise unauthorized("the Kubernetes API does not accept this token (TokenReview)", "invalid_token")
        info = status.user
        user = User(name=info.username or "unknown", uid=info.uid, groups=tuple(info.groups or ()),
                    extra={k: list(v) for k, v in (info.extra or {}).items()})  # fmt: skip
        self._remember(self._users, digest, (now + self._ttl, user))
        return user

    async def _authorize(self, user: User, digest: bytes, verb: str, namespace: str, name: str) -> None:
        key = (digest, verb, namespace, name)
        now = self._clock()
        if self._grants.get(key, 0.0) > now:
            return
        status = await self._call(self._review_access, user, verb, namespace, name)
        if not getattr(status, "allowed", False):
            raise IntakeError(403, f"{user.name} may not {verb} webhooks.{GROUP} {name!r} in namespace "
                                   f"{namespace!r} (SubjectAccessReview)")  # fmt: skip
        self._remember(self._grants, key, now + self._ttl)

    def _remember(self, cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= _MAX_ENTRIES:
            now = self._clock()
            for stale in [k for k, v in cache.items() if (v[0] if isinstance(v, tuple) else v) <= now]:
                del cache[stale]
            if len(cache) >= _MAX_ENTRIES:
                cache.clear()
        cache[key] = value

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.reviews += 1
        try:
            return await asyncio.to_thread(fn, *args)
        except (k8s.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            detail = f"HTTP {exc.status}" if isinstance(exc, k8s.ApiException) else type(exc).__name__
            log.warning("operations API: cannot review a caller with the Kubernetes API: %s", detail)
            raise IntakeError(503, "cannot check credentials: the Kubernetes API is unavailable; retry shortly",
                              headers={"Retry-After": "5"}) from None  # fmt: skip

    def _review(self, token: str) -> Any:
        body = k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token))
        return self._authn.create_token_review(body, _request_timeout=REQUEST_TIMEOUT).status

    def _review_access(self, user: User, verb: str, namespace: str, name: str) -> Any:
        attributes = k8s.V1ResourceAttributes(namespace=namespace, verb=verb, group=GROUP, resource=PLURAL,
                                              name=name)  # fmt: skip
        spec = k8s.V1SubjectAccessReviewSpec(user=user.name, uid=user.uid, groups=list(user.groups),
                                             extra=user.extra or None, resource_attributes=attributes)  # fmt: skip
        body = k8s.V1SubjectAccessReview(spec=spec)
        return self._authz.create_subject_access_review(body, _request_timeout=REQUEST_TIMEOUT).status
