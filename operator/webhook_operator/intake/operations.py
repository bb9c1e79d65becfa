"""The operations API: one Webhook's delivery log, test, resume, skip and redeliver over HTTP.

Mounted on the intake's application (``add_routes``) behind its own ``Authenticator``. Like the intake, it talks to
the delivery layer through a structural protocol (``OperationsBackend``), which ``delivery.operations.Operations``
implements, so this module never imports delivery.

    GET  /api/v1/namespaces/{namespace}/webhooks/{name}/deliveries?status=&since=&until=&cursor=&limit=
    POST /api/v1/namespaces/{namespace}/webhooks/{name}/test
    POST /api/v1/namespaces/{namespace}/webhooks/{name}/resume
    POST /api/v1/namespaces/{namespace}/webhooks/{name}/skip
    POST /api/v1/namespaces/{namespace}/webhooks/{name}/redeliver   {"eventIds": [...]} | {"since", "until"}, "to"

Reads need the Kubernetes verb ``get`` on the Webhook, operations ``patch`` (``required_access``), the same
permission that the request annotations need.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from webhook_operator.api.limits import deeper_than, depth_message
from webhook_operator.api.operations import (
    MAX_REDELIVERY,
    OperationError,
    RedeliverRequest,
    RedeliveryResult,
    TestResult,
    format_time,
    parse_time,
)
from webhook_operator.intake.auth import caller_of
from webhook_operator.intake.errors import IntakeError
from webhook_operator.store.base import AttemptOutcome, AttemptQuery, AttemptRecord

WEBHOOK_PATH = "/api/v1/namespaces/{namespace}/webhooks/{name}"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
MAX_RESPONSE_BODY = 1024  # characters of a receiver's answer shown per log line
_MAX_REQUEST_BODY = 1024 * 1024


class OperationsBackend(Protocol):
    async def deliveries(self, key: str, query: AttemptQuery) -> list[AttemptRecord]: ...

    async def test(self, key: str, who: str, trigger: str = "") -> TestResult: ...

    async def resume(self, key: str, who: str) -> str: ...

    async def skip(self, key: str, who: str) -> list[str]: ...

    async def redeliver(self, key: str, request: RedeliverRequest, who: str) -> RedeliveryResult: ...


def required_access(request: web.Request) -> tuple[str, str, str]:
    """(Kubernetes verb, namespace, Webhook name) a request needs: ``get`` to read, ``patch`` to operate."""
    verb = "get" if request.method in ("GET", "HEAD") else "patch"
    return verb, request.match_info.get("namespace", ""), request.match_info.get("name", "")


def record_json(record: AttemptRecord) -> dict[str, Any]:
    body = record.response_body
    if len(body) > MAX_RESPONSE_BODY:
        body = body[: MAX_RESPONSE_BODY - 1] + "…"
    return {
        "id": record.id,
        "time": format_time(record.started_at),
        "outcome": record.outcome.value,
        "attempt": record.attempt,
        "deliveryId": record.delivery_id,
        "eventIds": list(record.event_ids),
        "statusCode": record.status_code,
        "durationMs": round(record.duration_ms, 1),
        "error": record.error,
        "responseBody": body,
        "note": record.note,
    }


def result_json(result: TestResult) -> dict[str, Any]:
    return {**result.to_status(), "latencyMs": round(result.latency_ms, 1), "message": result.describe()}


def _key(request: web.Request) -> str:
    return f"{request.match_info['namespace']}/{request.match_info['name']}"


def _bad(message: str) -> IntakeError:
    return IntakeError(400, message)


def parse_query(params: Any, now: float) -> AttemptQuery:
    """``status`` (an outcome), ``since``/``until`` (RFC 3339 or an age such as 1h), ``cursor``, ``limit``."""
    outcome = None
    if params.get("status"):
        try:
            outcome = AttemptOutcome(params["status"])
        except ValueError:
            known = ", ".join(o.value for o in AttemptOutcome)
            raise _bad(f"status must be one of {known}, not {params['status']!r}") from None
    bounds: dict[str, float | None] = {}
    for name in ("since", "until"):
        try:
            bounds[name] = parse_time(params[name], now) if params.get(name) else None
        except ValueError as exc:
            raise _bad(f"{name}: {exc}") from None
    cursor = params.get("cursor") or None
    if cursor is not None and not (cursor.isascii() and cursor.isdigit()):
        raise _bad("cursor must be the 'next' value of a previous page")
    limit_text = params.get("limit") or str(DEFAULT_LIMIT)
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise _bad(f"limit must be a number from 1 to {MAX_LIMIT}")
    return AttemptQuery(outcome=outcome, since=bounds["since"], until=bounds["until"],
                        after_id=int(cursor) if cursor else None, limit=int(limit_text))  # fmt: skip


def parse_redeliver_body(data: Any, now: float) -> RedeliverRequest:
    if not isinstance(data, dict):
        raise _bad('body must be a JSON object: {"eventIds": [...]} or {"since": "...", "until": "..."}')
    unknown = set(data) - {"eventIds", "since", "until", "to"}
    if unknown:
        raise _bad(f"unknown field(s): {', '.join(sorted(unknown))} (expected eventIds, since, until, to)")
    ids = data.get("eventIds") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise _bad("eventIds must be a list of event ids")
    if len(ids) > MAX_REDELIVERY:
        raise _bad(f"at most {MAX_REDELIVERY} event ids per redelivery")
    try:
        since = parse_time(str(data["since"]), now) if data.get("since") else None
        until = parse_time(str(data["until"]), now) if data.get("until") else None
        to = data.get("to") or None
        if to is not None and not isinstance(to, str):
            raise ValueError("to must be the name of a Webhook in the same namespace")
        return RedeliverRequest(tuple(dict.fromkeys(ids)), since, until, to)
    except ValueError as exc:
        raise _bad(str(exc)) from None


Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _operation(fn: Route) -> Route:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except OperationError as exc:
            raise IntakeError(exc.status, exc.message) from None

    return wrapped


def operation_routes(backend: OperationsBackend, *, clock: Callable[[], float] = time.time) -> list[web.RouteDef]:
    async def deliveries(request: web.Request) -> web.Response:
        query = parse_query(request.query, clock())
        records = await backend.deliveries(_key(request), query)
        full = len(records) == query.limit
        return web.json_response({
            "webhook": _key(request), "items": [record_json(r) for r in records],
            "next": str(records[-1].id) if full and records and records[-1].id is not None else None,
        })  # fmt: skip

    async def test(request: web.Request) -> web.Response:
        result = await backend.test(_key(request), caller_of(request).name, "http")
        return web.json_response(result_json(result))

    async def resume(request: web.Request) -> web.Response:
        message = await backend.resume(_key(request), caller_of(request).name)
        return web.json_response({"message": message})

    async def skip(request: web.Request) -> web.Response:
        skipped = await backend.skip(_key(request), caller_of(request).name)
        return web.json_response({"skipped": skipped, "message": f"skipped the held batch of {len(skipped)} event(s)"})

    async def redeliver(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > _MAX_REQUEST_BODY:
            raise IntakeError(413, "body too large")
        raw = await request.read() if request.can_read_body else b"{}"
        try:
            data = json.loads(raw or b"{}")
        except RecursionError:
            raise _bad(f"body: {depth_message()}") from None
        except ValueError:
            raise _bad("body is not valid JSON") from None
        if deeper_than(raw):  # the intake's one nesting limit (api.limits), for every JSON body
            raise _bad(f"body: {depth_message()}")
        wanted = parse_redeliver_body(data, clock())
        caller = caller_of(request)
        if wanted.to and caller.authorize is not None:
            await caller.authorize("patch", request.match_info["namespace"], wanted.to)
        result = await backend.redeliver(_key(request), wanted, caller.name)
        return web.json_response({
            "target": result.target, "queued": result.event_ids, "missing": result.missing,
            "message": f"{len(result.event_ids)} event(s) queued for redelivery to {result.target}",
        }, status=202)  # fmt: skip

    return [
        web.get(WEBHOOK_PATH + "/deliveries", _operation(deliveries)),
        web.post(WEBHOOK_PATH + "/test", _operation(test)),
        web.post(WEBHOOK_PATH + "/resume", _operation(resume)),
        web.post(WEBHOOK_PATH + "/skip", _operation(skip)),
        web.post(WEBHOOK_PATH + "/redeliver", _operation(redeliver)),
    ]
