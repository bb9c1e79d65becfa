"""The operations API routes on the intake's app: auth, query parsing, paging, bodies, errors as JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from webhook_operator.api.operations import OperationError, RedeliverRequest, RedeliveryResult, TestResult
from webhook_operator.intake.app import add_routes, build_app
from webhook_operator.intake.auth import CALLER, BearerAuth, Caller, StaticTokens
from webhook_operator.intake.errors import IntakeError
from webhook_operator.intake.operations import operation_routes, parse_query, required_access
from webhook_operator.store.base import AttemptOutcome, AttemptQuery, AttemptRecord

from .helpers import TOKEN, Client, FakeSubmitter, serve_app

NOW = 1_800_000_000.0
BASE = "/api/v1/namespaces/ns/webhooks/hook"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def record(i: int, outcome: AttemptOutcome = AttemptOutcome.DELIVERED, **kw: Any) -> AttemptRecord:
    values: dict[str, Any] = dict(webhook="ns/hook", delivery_id=f"d{i}", event_ids=[f"e{i}"], attempt=1,
                                  started_at=NOW + i, duration_ms=1.5, outcome=outcome, status_code=200,
                                  id=i)  # fmt: skip
    values.update(kw)
    return AttemptRecord(**values)


@dataclass
class FakeBackend:
    records: list[AttemptRecord] = field(default_factory=lambda: [record(i) for i in range(1, 6)])
    calls: list[tuple[str, str, Any]] = field(default_factory=list)

    async def deliveries(self, key: str, query: AttemptQuery) -> list[AttemptRecord]:
        if key != "ns/hook":
            raise OperationError(404, f"webhook {key} not found")
        self.calls.append(("deliveries", key, query))
        rows = [r for r in self.records if query.after_id is None or (r.id or 0) > query.after_id]
        return rows[: query.limit]

    async def test(self, key: str, who: str, trigger: str = "") -> TestResult:
        self.calls.append(("test", key, who))
        return TestResult(NOW, True, 204, 3.21, None, "ev", who, trigger)

    async def resume(self, key: str, who: str) -> str:
        raise OperationError(409, "nothing to resume: no batch is held (status active)")

    async def skip(self, key: str, who: str) -> list[str]:
        self.calls.append(("skip", key, who))
        return ["e1"]

    async def redeliver(self, key: str, request: RedeliverRequest, who: str) -> RedeliveryResult:
        self.calls.append(("redeliver", key, request))
        return RedeliveryResult(f"ns/{request.to or 'hook'}", list(request.event_ids), [])


@asynccontextmanager
async def api(backend: FakeBackend, auth: Any = None) -> AsyncIterator[Client]:
    app = build_app(FakeSubmitter(), tokens=StaticTokens([TOKEN]), allow_anonymous=False, hmac_secret=None)
    add_routes(app, operation_routes(backend, clock=lambda: NOW), auth=auth or BearerAuth(StaticTokens([TOKEN])))
    async with serve_app(app) as client:
        yield client


async def test_routes_need_a_token_and_name_the_caller() -> None:
    backend = FakeBackend()
    async with api(backend) as client:
        assert (await client.get(f"{BASE}/deliveries")).status == 401
        assert (await client.post(f"{BASE}/test", headers={"Authorization": "Bearer nope"})).status == 401
        response = await client.post(f"{BASE}/test", headers=AUTH)
        body = await response.json()
        assert response.status == 200 and body["success"] and body["statusCode"] == 204 and body["latencyMs"] == 3.2
        assert body["requestedBy"].startswith("token:") and body["trigger"] == "http"
        assert backend.calls[-1] == ("test", "ns/hook", body["requestedBy"])


async def test_deliveries_page_with_a_cursor_and_filters() -> None:
    backend = FakeBackend()
    async with api(backend) as client:
        first = await (await client.get(f"{BASE}/deliveries?limit=2", headers=AUTH)).json()
        assert [i["id"] for i in first["items"]] == [1, 2] and first["next"] == "2"
        item = first["items"][0]
        assert item == {"id": 1, "time": "2027-01-15T08:00:01.000Z", "outcome": "delivered", "attempt": 1,
                        "deliveryId": "d1", "eventIds": ["e1"], "statusCode": 200, "durationMs": 1.5, "error": None,
                        "responseBody": "", "note": ""}  # fmt: skip
        last = await (await client.get(f"{BASE}/deliveries?limit=2&cursor=4", headers=AUTH)).json()
        assert [i["id"] for i in last["items"]] == [5] and last["next"] is None
        await client.get(f"{BASE}/deliveries?status=failed&since=1h&until=2027-01-15T08:00:00Z", headers=AUTH)
        query = backend.calls[-1][2]
        assert (query.outcome, query.since, query.until, query.limit) == (AttemptOutcome.FAILED, NOW - 3600, NOW, 100)
        for bad in ("status=nope", "since=yesterday", "cursor=abc", "limit=0", "limit=5000"):
            response = await client.get(f"{BASE}/deliveries?{bad}", headers=AUTH)
            assert response.status == 400, bad
            assert (await response.json())["status"] == 400
        missing = await client.get("/api/v1/namespaces/ns/webhooks/other/deliveries", headers=AUTH)
        assert missing.status == 404 and "not found" in (await missing.json())["error"]


async def test_long_response_bodies_are_cut() -> None:
    backend = FakeBackend(records=[record(1, AttemptOutcome.FAILED, response_body="x" * 5000, status_code=500)])
    async with api(backend) as client:
        (item,) = (await (await client.get(f"{BASE}/deliveries", headers=AUTH)).json())["items"]
        assert len(item["responseBody"]) == 1024 and item["responseBody"].endswith("…")


async def test_operations_map_results_and_conflicts() -> None:
    backend = FakeBackend()
    async with api(backend) as client:
        conflict = await client.post(f"{BASE}/resume", headers=AUTH)
        assert conflict.status == 409 and "nothing to resume" in (await conflict.json())["error"]
        skipped = await (await client.post(f"{BASE}/skip", headers=AUTH)).json()
        assert skipped["skipped"] == ["e1"]
        response = await client.post(f"{BASE}/redeliver", headers=AUTH, json={"eventIds": ["a", "b", "a"]})
        assert response.status == 202 and (await response.json())["queued"] == ["a", "b"]
        response = await client.post(f"{BASE}/redeliver", headers=AUTH, json={"since": "2h", "to": "archive"})
        assert response.status == 202 and (await response.json())["target"] == "ns/archive"
        assert backend.calls[-1][2] == RedeliverRequest(since=NOW - 7200, to="archive")
        for bad in ({}, {"eventIds": "a"}, {"eventIds": ["a"], "since": "1h"}, {"colour": 1}, [1], {"since": "x"}):
            response = await client.post(f"{BASE}/redeliver", headers=AUTH, json=bad)
            assert response.status == 400, bad
        response = await client.post(f"{BASE}/redeliver", headers=AUTH, data=b"{not json")
        assert response.status == 400


class Checking:
    """An authenticator whose caller may patch only webhook 'hook' (like a Role with resourceNames)."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, str, str]] = []

    async def authenticate(self, request: web.Request) -> None:
        self.checked.append(required_access(request))

        async def authorize(verb: str, namespace: str, name: str) -> None:
            self.checked.append((verb, namespace, name))
            if name != "hook":
                raise IntakeError(403, f"alice may not {verb} {name}")

        request[CALLER] = Caller("alice", authorize)


async def test_redelivery_to_another_webhook_checks_that_one_too() -> None:
    auth = Checking()
    backend = FakeBackend()
    async with api(backend, auth) as client:
        await client.get(f"{BASE}/deliveries")
        assert auth.checked[-1] == ("get", "ns", "hook")
        response = await client.post(f"{BASE}/redeliver", json={"eventIds": ["a"], "to": "archive"})
        assert response.status == 403 and auth.checked[-2:] == [("patch", "ns", "hook"), ("patch", "ns", "archive")]
        assert not [c for c in backend.calls if c[0] == "redeliver"]


def test_parse_query_defaults() -> None:
    assert parse_query({}, NOW) == AttemptQuery()


def test_every_route_is_in_the_openapi_document() -> None:
    from webhook_operator.intake.openapi import openapi_document

    paths = openapi_document()["paths"]
    for route in operation_routes(FakeBackend()):
        operation = paths[route.path][route.method.lower()]
        assert operation["security"] == [{"kubernetesToken": []}] and "401" in operation["responses"]
