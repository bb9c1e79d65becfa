"""The Kubernetes side of operations without a cluster: who set an annotation, and the TokenReview +
SubjectAccessReview authenticator's decisions and cache (the API calls replaced by recorders)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client as k8s

from webhook_operator.handlers.apiauth import KubernetesAuth, User
from webhook_operator.handlers.operations import requested_by
from webhook_operator.intake.app import add_routes, build_app
from webhook_operator.intake.auth import StaticTokens, caller_of

from ..intake.helpers import Client, FakeSubmitter, serve_app

ANNOTATION = "events.open-metadata.org/test"


def test_requested_by_names_the_latest_manager_of_the_annotation() -> None:
    managed = [
        {"manager": "kubectl-client-side-apply", "time": "2027-01-01T00:00:00Z",
         "fieldsV1": {"f:metadata": {"f:annotations": {"f:events.open-metadata.org/test": {}}}}},
        {"manager": "webhook-operator", "time": "2027-01-03T00:00:00Z", "fieldsV1": {"f:status": {}}},
        {"manager": "kubectl-annotate", "time": "2027-01-02T00:00:00Z",
         "fieldsV1": {"f:metadata": {"f:annotations": {"f:events.open-metadata.org/test": {}, "f:x": {}}}}},
    ]  # fmt: skip
    assert requested_by(managed, ANNOTATION) == "kubectl-annotate (annotation)"
    assert requested_by(managed, "events.open-metadata.org/skip") == "annotation"
    assert requested_by(None, ANNOTATION) == "annotation"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class Reviews(KubernetesAuth):
    """The real decisions with TokenReview/SubjectAccessReview answered from tables."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(k8s.ApiClient(), ttl=30.0, clock=clock)
        self.users = {"alice-token": "alice", "bob-token": "bob"}
        self.grants = {("alice", "get"), ("alice", "patch"), ("bob", "get")}
        self.calls: list[tuple[str, ...]] = []
        self.broken = False

    def _review(self, token: str) -> Any:
        self.calls.append(("token",))
        if self.broken:
            raise k8s.ApiException(status=500)
        name = self.users.get(token)
        user = SimpleNamespace(username=name, uid="u", groups=["g"], extra={"k": ["v"]})
        return SimpleNamespace(authenticated=name is not None, user=user)

    def _review_access(self, user: User, verb: str, namespace: str, name: str) -> Any:
        self.calls.append(("access", user.name, verb, namespace, name))
        return SimpleNamespace(allowed=(user.name, verb) in self.grants)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Client, Reviews, Clock]]:
    clock = Clock()
    auth = Reviews(clock)

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"caller": caller_of(request).name})

    app = build_app(FakeSubmitter(), tokens=StaticTokens(["intake"]), allow_anonymous=False, hmac_secret=None)
    path = "/api/v1/namespaces/{namespace}/webhooks/{name}"
    add_routes(app, [web.get(path + "/deliveries", handler), web.post(path + "/test", handler)], auth=auth)
    async with serve_app(app) as client:
        yield client, auth, clock


def bearer(token: str, header: str = "Authorization") -> dict[str, str]:
    return {header: f"Bearer {token}"}


async def test_token_review_then_access_review_with_a_short_cache(served: tuple[Client, Reviews, Clock]) -> None:
    client, auth, clock = served
    url = "/api/v1/namespaces/ns/webhooks/hook"
    response = await client.get(url + "/deliveries", headers=bearer("alice-token"))
    assert response.status == 200 and (await response.json())["caller"] == "alice"
    assert auth.calls == [("token",), ("access", "alice", "get", "ns", "hook")]
    assert (await client.get(url + "/deliveries", headers=bearer("alice-token"))).status == 200
    assert len(auth.calls) == 2  # cached
    assert (
        await client.post(url + "/test", headers=bearer("alice-token", "X-Webhook-Operator-Authorization"))
    ).status == 200
    assert auth.calls[-1] == ("access", "alice", "patch", "ns", "hook") and len(auth.calls) == 3
    clock.now += 31
    assert (await client.get(url + "/deliveries", headers=bearer("alice-token"))).status == 200
    assert len(auth.calls) == 5  # expired: both reviews again

    denied = await client.post(url + "/test", headers=bearer("bob-token"))
    assert denied.status == 403 and "bob may not patch" in (await denied.json())["error"]
    auth.grants.add(("bob", "patch"))
    assert (await client.post(url + "/test", headers=bearer("bob-token"))).status == 200  # refusals are not cached

    assert (await client.get(url + "/deliveries")).status == 401
    assert (await client.get(url + "/deliveries", headers=bearer("stolen"))).status == 401
    assert (await client.get(url + "/deliveries", headers={"Authorization": "Basic eA=="})).status == 401
    auth.broken = True
    unavailable = await client.get(url + "/deliveries", headers=bearer("carol-token"))
    assert unavailable.status == 503 and unavailable.headers["Retry-After"] == "5"
