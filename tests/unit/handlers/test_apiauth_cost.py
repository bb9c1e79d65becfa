"""Issue 13, finding 8: what an unauthenticated caller of the operations API costs the operator.

Before, every request with a bad token made an uncached TokenReview on asyncio's *default* thread pool, the one
``asyncio.to_thread`` and ``run_in_executor(None, ...)`` share with the rest of the process: 60 bad requests with a
2 s review latency delayed unrelated work by ~20 s. Now reviews run on the authenticator's own bounded pool, a rejected
token is remembered for 10 s (by its SHA-256, never the token), concurrent reviews of one token are made once, and
each client address has a token bucket for failures and reviews (429 with ``Retry-After`` when it is empty).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from kubernetes import client as k8s

from webhook_operator.handlers.apiauth import KubernetesAuth, User
from webhook_operator.intake.app import add_routes, build_app
from webhook_operator.intake.auth import StaticTokens, caller_of
from webhook_operator.intake.errors import IntakeError

from ..intake.helpers import Client, FakeSubmitter, serve_app

URL = "/api/v1/namespaces/ns/webhooks/hook/deliveries"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class SlowReviews(KubernetesAuth):
    """TokenReview answers after ``latency`` seconds (blocking, like the real client); only ``good`` is valid."""

    def __init__(self, clock: Clock, latency: float = 0.0) -> None:
        super().__init__(k8s.ApiClient(), clock=clock)
        self.latency = latency
        self.threads: list[str] = []
        self.token_calls = 0

    def _review(self, token: str) -> Any:
        self.token_calls += 1
        self.threads.append(threading.current_thread().name)
        time.sleep(self.latency)
        ok = token == "good"
        user = SimpleNamespace(username="alice" if ok else None, uid="u", groups=[], extra={})
        return SimpleNamespace(authenticated=ok, user=user)

    def _review_access(self, user: User, verb: str, namespace: str, name: str) -> Any:
        self.threads.append(threading.current_thread().name)
        return SimpleNamespace(allowed=True)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(clock: Clock) -> Iterator[Callable[..., SlowReviews]]:
    """Authenticators closed after the test (their pools are real threads)."""
    made: list[SlowReviews] = []

    def factory(latency: float = 0.0) -> SlowReviews:
        made.append(SlowReviews(clock, latency))
        return made[-1]

    yield factory
    for auth in made:
        auth.close()


@asynccontextmanager
async def _serve(auth: KubernetesAuth) -> AsyncIterator[Client]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"caller": caller_of(request).name})

    app = build_app(FakeSubmitter(), tokens=StaticTokens(["intake"]), allow_anonymous=False, hmac_secret=None)
    add_routes(app, [web.get("/api/v1/namespaces/{namespace}/webhooks/{name}/deliveries", handler)], auth=auth)
    async with serve_app(app) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_sixty_bad_requests_cost_one_review_and_do_not_delay_the_default_pool(
    clock: Clock, make: Callable[..., SlowReviews]
) -> None:
    auth = make(latency=2.0)
    async with _serve(auth) as client:
        loop = asyncio.get_running_loop()
        requests = [asyncio.create_task(client.get(URL, headers=bearer("stolen"))) for _ in range(60)]
        await asyncio.sleep(0.3)  # the requests are in, their reviews (if any) occupy threads
        started = time.monotonic()
        await loop.run_in_executor(None, time.sleep, 0.01)  # unrelated work on the default pool
        delay = time.monotonic() - started
        responses = await asyncio.gather(*requests)
        statuses = sorted({r.status for r in responses})
        assert delay < 0.5, f"unrelated default-executor work waited {delay:.2f} s behind TokenReviews"
        assert auth.token_calls <= 1, f"{auth.token_calls} TokenReviews for one bad token"
        assert set(statuses) <= {401, 429}, statuses
        assert 401 in statuses
        # Remembered for 10 s: more requests with that token make no review at all ...
        clock.now += 1
        assert (await client.get(URL, headers=bearer("stolen"))).status == 401
        assert auth.token_calls == 1
        # ... and after that it is asked again (a token is never cached as bad for long).
        clock.now += 10
        assert (await client.get(URL, headers=bearer("stolen"))).status == 401
        assert auth.token_calls == 2


async def test_many_different_bad_tokens_never_reach_the_default_pool(make: Callable[..., SlowReviews]) -> None:
    """Distinct tokens defeat the negative cache: the rate limit caps the reviews at the burst (20), and a client
    has at most 2 reviews pending, so 2 run on the authenticator's threads while the default pool stays free; every
    other request is 429 at once."""
    auth = make(latency=1.0)
    async with _serve(auth) as client:
        loop = asyncio.get_running_loop()
        requests = [asyncio.create_task(client.get(URL, headers=bearer(f"guess-{i}"))) for i in range(60)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await loop.run_in_executor(None, time.sleep, 0.01)
        delay = time.monotonic() - started
        responses = await asyncio.gather(*requests)
        statuses = [r.status for r in responses]
        limited = [await r.json() for r in responses if r.status == 429 and "in progress" in (await r.text())]
    assert delay < 0.5, f"unrelated default-executor work waited {delay:.2f} s behind TokenReviews"
    assert statuses.count(401) == 2 and statuses.count(429) == 58 and auth.token_calls == 2
    assert len(set(auth.threads)) <= 2
    assert limited and limited[0]["status"] == 429, "the concurrency limit answers the JSON error"
    assert all(r.headers["Retry-After"] for r in responses if r.status == 429)


async def test_reviews_run_on_the_authenticators_own_bounded_pool(make: Callable[..., SlowReviews]) -> None:
    auth = make()
    async with _serve(auth) as client:
        assert (await client.get(URL, headers=bearer("good"))).status == 200
        assert auth.threads and all(name.startswith("k8s-review") for name in auth.threads), auth.threads
        # Closed (the service closes it when it stops): a review now is a clean 503, never a crash, and never a
        # thread of the default pool.
        auth.close()
        response = await client.get(URL, headers=bearer("another"))
        assert response.status == 503 and response.headers["Retry-After"]
        auth.close()  # idempotent


async def test_failures_per_client_are_rate_limited_with_429(clock: Clock, make: Callable[..., SlowReviews]) -> None:
    auth = make()
    async with _serve(auth) as client:
        assert (await client.get(URL, headers=bearer("good"))).status == 200  # alice, now cached
        statuses = [(await client.get(URL, headers=bearer(f"guess-{i}"))).status for i in range(30)]
        # Burst 20 (alice's first request took 2: TokenReview + SubjectAccessReview), then refused.
        assert statuses[:18] == [401] * 18 and set(statuses[18:]) == {429}, statuses
        reviews = auth.token_calls
        limited = await client.get(URL, headers=bearer("guess-x"))
        body = await limited.json()
        assert limited.status == 429 and body["status"] == 429 and "too many" in body["error"]
        assert int(limited.headers["Retry-After"]) == 1
        assert auth.token_calls == reviews, "a refused client must not cause a review"
        assert (await client.get(URL)).status == 429  # no token at all counts as a failure too
        # A caller whose answer is cached costs nothing and is not throttled by the others' failures.
        assert (await client.get(URL, headers=bearer("good"))).status == 200
        clock.now += 1.0  # 10 per second refill
        statuses = [(await client.get(URL, headers=bearer(f"later-{i}"))).status for i in range(12)]
        assert statuses == [401] * 10 + [429] * 2, statuses


async def test_caches_are_bounded_and_keep_no_token(make: Callable[..., SlowReviews]) -> None:
    auth = make()
    auth._limit.rate, auth._limit.burst = 1e9, 1e9  # this test is about the caches, not the limit
    auth._rejected.max_entries = 8
    async with _serve(auth) as client:
        for i in range(50):
            assert (await client.get(URL, headers=bearer(f"secret-guess-{i}"))).status == 401
        assert (await client.get(URL, headers=bearer("good"))).status == 200
    assert len(auth._rejected) <= 8
    for cache in (auth._users, auth._rejected, auth._grants):
        assert len(cache) > 0 or cache is auth._rejected
        for key in cache:
            for part in key if isinstance(key, tuple) else (key,):
                assert not (isinstance(part, str) and "guess" in part) and part != "good"
                assert not (isinstance(part, bytes) and (b"guess" in part or part == b"good"))


def _request(remote: str, token: str) -> web.Request:
    return make_mocked_request("GET", URL, headers=bearer(token), match_info={"namespace": "ns", "name": "hook"}).clone(
        remote=remote
    )


@pytest.mark.timeout(60)
async def test_one_client_within_its_rate_cannot_starve_another_client(make: Callable[..., SlowReviews]) -> None:
    """Adversarial review of issue 13: the review queue (4 threads, 64 pending) was shared first come, first served.
    One client sending distinct bad tokens at its allowed rate (10/s) with 2 s TokenReviews queued reviews faster than
    the threads finish them (~2/s), so a legitimate user from another address waited behind them for tens of seconds,
    then got 503. Now a client has at most 2 reviews pending (half the threads); more is 429 with Retry-After."""
    auth = make(latency=2.0)
    attacker: list[asyncio.Task[None]] = []

    async def attempt(token: str) -> None:
        await auth.authenticate(_request("203.0.113.9", token))

    try:
        for i in range(30):  # 3 s at 10 requests a second: inside the client's rate limit
            attacker.append(asyncio.create_task(attempt(f"guess-{i}")))
            await asyncio.sleep(0.1)
        started = time.monotonic()
        legitimate = _request("198.51.100.7", "good")
        await asyncio.wait_for(auth.authenticate(legitimate), 6.0)
        waited = time.monotonic() - started
        assert caller_of(legitimate).name == "alice"
        assert waited < 4.0, f"the legitimate client waited {waited:.1f} s behind another client's reviews"
    finally:
        results = await asyncio.gather(*attacker, return_exceptions=True)
    refused = [r for r in results if isinstance(r, IntakeError) and r.status == 429]
    assert refused and all(r.headers["Retry-After"] for r in refused), results
    assert {r.status for r in results if isinstance(r, IntakeError)} <= {401, 429}, results
    assert auth.pending() == {}, "the per-client table is dropped when idle"
