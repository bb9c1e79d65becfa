"""Operations API authentication by Kubernetes: the caller's own token, TokenReview, then SubjectAccessReview.

A user calls the API with the bearer token of their kubeconfig (``kubectl webhook`` does that). The operator asks
the API server who that is (TokenReview) and whether that identity may do what the route needs to that Webhook
(SubjectAccessReview: ``get`` on ``webhooks`` to read the delivery log, ``patch`` to operate, in the Webhook's
namespace and by name), so RBAC decides — the same RBAC that governs ``kubectl get`` and ``kubectl annotate``.

Every answer is keyed by a SHA-256 of the token, never the token itself (which is neither kept nor logged).
Positive answers are cached for ``ttl`` seconds (30), so a busy CLI session costs two API calls per half minute and
a revoked token or removed binding stops working within ``ttl``. A token the API server rejects is remembered for
``negative_ttl`` seconds (10); a denied SubjectAccessReview is not, so a new RoleBinding works at once.

Reviews are blocking client calls; they run on this authenticator's own small thread pool (``workers``, shut down by
``close``), never on asyncio's default executor that the rest of the process shares, and concurrent reviews of one
token are made once. Each client address has a token bucket (``rate`` a second, ``burst``) that every review and
every failure draws from; an empty bucket is 429 with ``Retry-After``, before any review. Cached answers cost
nothing, so legitimate users are not throttled by someone guessing from elsewhere — unless they share an address
(e.g. all callers through the API server's service proxy arrive from the API server). Issue 13, finding 8: without
this, 60 bad requests with a 2 s review latency delayed unrelated work by ~20 s.

The threads are shared fairly, too: a client address has at most ``max_pending_per_client`` reviews (2, half the
threads) running or queued; one more is 429 with ``Retry-After`` at once, without a review. A bucket bounds how many
reviews a client starts, not how long they take: with 2 s reviews one client inside its rate (10/s) queued them
faster than 4 threads finish them (~2/s), so every other caller waited behind its queue and then got 503 (adversarial
review of issue 13). Now it holds at most half the threads and others are served by the rest; the global cap
(``max_pending``, 64, then 503) remains as a backstop against many addresses. A client's count exists only while it
has a review pending, so that table is no larger than the reviews in flight.

The API server's service proxy (``kubectl webhook`` without ``--server``) removes the ``Authorization`` header after
authenticating the user itself, so the token may also come in ``X-Webhook-Operator-Authorization``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import urllib3
from aiohttp import web
from kubernetes import client as k8s

from webhook_operator.api.crd import GROUP, PLURAL
from webhook_operator.api.operations import PROXY_TOKEN_HEADER
from webhook_operator.intake.auth import CALLER, Caller, RateLimiter, TtlCache, client_key, unauthorized
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
    """``Authenticator`` for the operations API (see the module docstring); ``close`` it when the server stops."""

    def __init__(self, api: k8s.ApiClient, *, ttl: float = 30.0, negative_ttl: float = 10.0, rate: float = 10.0,
                 burst: float = 20.0, workers: int = 4, max_pending: int = 64, max_pending_per_client: int = 2,
                 access: Callable[[web.Request], tuple[str, str, str]] = required_access,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._authn = k8s.AuthenticationV1Api(api)
        self._authz = k8s.AuthorizationV1Api(api)
        self._access = access
        self._users: TtlCache[bytes, User] = TtlCache(ttl, _MAX_ENTRIES, clock)
        self._rejected: TtlCache[bytes, bool] = TtlCache(negative_ttl, _MAX_ENTRIES, clock)
        self._grants: TtlCache[tuple[bytes, str, str, str, str], bool] = TtlCache(ttl, _MAX_ENTRIES, clock)
        self._limit = RateLimiter(rate, burst, clock=clock)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="k8s-review")
        self._inflight: dict[bytes, asyncio.Future[User | None]] = {}
        self._pending, self._max_pending = 0, max_pending
        self._per_client: dict[str, int] = {}  # client -> reviews running or queued; no entry at zero
        self._max_per_client = max_pending_per_client
        self.reviews = 0  # API calls made (tests check the cache)

    def pending(self) -> dict[str, int]:
        """Reviews running or queued per client address (tests and diagnostics)."""
        return dict(self._per_client)

    def close(self) -> None:
        """Stop the review threads; later reviews answer 503."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def authenticate(self, request: web.Request) -> None:
        client = client_key(request.remote)
        try:
            token = bearer_token(request)
        except IntakeError:
            self._limit.charge(client)
            raise
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        user = self._users.get(digest)
        if user is None:
            self._limit.charge(client)  # a review, or a token known to be bad: both cost the client
            user = None if self._rejected.get(digest) else await self._review_once(client, token, digest)
            if user is None:
                raise unauthorized("the Kubernetes API does not accept this token (TokenReview)", "invalid_token")
        del token
        verb, namespace, name = self._access(request)
        await self._authorize(client, user, digest, verb, namespace, name)

        async def authorize(verb: str, namespace: str, name: str) -> None:
            await self._authorize(client, user, digest, verb, namespace, name)

        request[CALLER] = Caller(user.name, authorize)

    async def _review_once(self, client: str, token: str, digest: bytes) -> User | None:
        """One TokenReview per token at a time: concurrent requests with it wait for the same answer."""
        pending = self._inflight.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._user(client, token, digest))
            self._inflight[digest] = pending
            pending.add_done_callback(lambda done: self._settled(digest, done))
        try:
            return await asyncio.shield(pending)
        except IntakeError as exc:  # a fresh exception per waiter: they are raised (and annotated) separately
            raise IntakeError(exc.status, exc.message, headers=exc.headers) from None

    def _settled(self, digest: bytes, done: asyncio.Future[User | None]) -> None:
        self._inflight.pop(digest, None)
        if not done.cancelled():
            done.exception()  # retrieved, even when every waiter went away

    async def _user(self, client: str, token: str, digest: bytes) -> User | None:
        status = await self._call(client, self._review, token)
        if not getattr(status, "authenticated", False):
            self._rejected.put(digest, True)
            return None
        info = status.user
        user = User(name=info.username or "unknown", uid=info.uid, groups=tuple(info.groups or ()),
                    extra={k: list(v) for k, v in (info.extra or {}).items()})  # fmt: skip
        self._users.put(digest, user)
        return user

    async def _authorize(self, client: str, user: User, digest: bytes, verb: str, namespace: str, name: str) -> None:
        key = (digest, verb, PLURAL, namespace, name)
        if self._grants.get(key):
            return
        self._limit.charge(client)
        status = await self._call(client, self._review_access, user, verb, namespace, name)
        if not getattr(status, "allowed", False):
            raise IntakeError(403, f"{user.name} may not {verb} webhooks.{GROUP} {name!r} in namespace "
                                   f"{namespace!r} (SubjectAccessReview)")  # fmt: skip
        self._grants.put(key, True)

    async def _call(self, client: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one review on the pool, counted against ``client`` (at most ``max_pending_per_client``) and the
        global cap."""
        mine = self._per_client.get(client, 0)
        if mine >= self._max_per_client:
            raise IntakeError(429, f"too many credential checks in progress from {client}; retry in 1 s",
                              headers={"Retry-After": "1"})  # fmt: skip
        if self._pending >= self._max_pending:
            raise _unavailable("too many credential checks in progress; retry shortly")
        self._pending += 1
        self._per_client[client] = mine + 1
        self.reviews += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except RuntimeError:  # the pool is shut down: the server is stopping
            raise _unavailable("the operator is stopping; retry shortly") from None
        except (k8s.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            detail = f"HTTP {exc.status}" if isinstance(exc, k8s.ApiException) else type(exc).__name__
            log.warning("operations API: cannot review a caller with the Kubernetes API: %s", detail)
            raise _unavailable("cannot check credentials: the Kubernetes API is unavailable; retry shortly") from None
        finally:
            self._pending -= 1
            left = self._per_client.pop(client) - 1
            if left:
                self._per_client[client] = left

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


def _unavailable(message: str) -> IntakeError:
    return IntakeError(503, message, headers={"Retry-After": "5"})
