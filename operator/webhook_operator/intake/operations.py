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
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from webhook_operator.api.limits import deeper_than, depth_message
from webhook_operator.api.operations import (
    MAX_REDELIVERY,
    MAX_TIME,
    OperationError,
    RedeliverRequest,
    RedeliveryResult,
    TestResult,
    format_time,
    parse_time,
)
from webhook_operator.intake.auth import caller_of
from webhook_operator.intake.errors import IntakeError
from webhook_operator.store.base import AttemptOutcome, AttemptQuery, AttemptRecord, LeaseLost

WEBHOOK_PATH = "/api/v1/namespaces/{namespace}/webhooks/{name}"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
MAX_RESPONSE_BODY = 1024  # characters of a receiver's answer shown per log line
MAX_REQUEST_BODY = 1024 * 1024

# What the parameters look like, written once for the code below and the OpenAPI document (intake/openapi.py), so
# the document is exactly as strict as the code (issue 13, item 11: checked by fuzzing). ASCII classes only: the
# document's readers use ECMA-262 regular expressions, where ``\d`` is ASCII, and Python's ``\d`` is not.
#: RFC 3339 with a zone (the calendar check is ``format: date-time`` in the document, ``fromisoformat`` here).
RFC3339_PATTERN = (r"^(?!0000)[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:"
                   r"([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")  # fmt: skip
#: An age: that long before now (bounded, so it is always a finite time).
AGE_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,9})?[smhd]$"
#: A page cursor: the ``next`` of the previous page (a log line id; bounded to what SQLite's integers hold).
CURSOR_PATTERN = r"^[0-9]{1,18}$"
#: A Webhook name (``to``): a Kubernetes object name.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
NAME_MAX_LENGTH = 253
_RFC3339, _AGE, _CURSOR, _NAME = (re.compile(p) for p in (RFC3339_PATTERN, AGE_PATTERN, CURSOR_PATTERN, NAME_PATTERN))
_TIME_FORMS = "RFC 3339 with a zone (2026-03-04T18:00:00Z) or an age (90s, 15m, 2h, 7d)"


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


def parse_api_time(name: str, value: Any, now: float) -> float:
    """``since``/``until`` on the HTTP API: exactly ``RFC3339_PATTERN`` (a real calendar time) or ``AGE_PATTERN``.

    Stricter than ``parse_time`` (which annotations use), which also takes what ``datetime.fromisoformat`` takes
    beyond RFC 3339 (``20260304T1800Z``, no seconds, surrounding spaces). A leap second (``:60``) is valid at
    23:59 UTC only, as JSON Schema's ``date-time`` has it, and counts as the next second. The result is clamped
    to [1970, 9999] (nothing the operator stores lies outside; found by fuzzing: ``since=76922304.7h`` was a 500).
    """
    if isinstance(value, str) and _AGE.fullmatch(value):
        return parse_time(value, now)  # clamped to [0, MAX_TIME] there
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise _bad(f"{name}: invalid time {value!r}: use {_TIME_FORMS}")
    leap = value[17:19] == "60"
    try:
        moment = parse_time(value[:17] + "59" + value[19:] if leap else value, now)
    except ValueError:  # the shape is right, the calendar is not (2026-02-30)
        raise _bad(f"{name}: invalid time {value!r}: no such date or time") from None
    if leap and datetime.fromtimestamp(moment, UTC).strftime("%H:%M") != "23:59":
        raise _bad(f"{name}: invalid time {value!r}: a leap second is 23:59:60 UTC")
    return min(moment + 1.0, MAX_TIME) if leap else moment


def parse_query(params: Any, now: float) -> AttemptQuery:
    """``status`` (an outcome), ``since``/``until`` (RFC 3339 or an age such as 1h), ``cursor``, ``limit``.

    A parameter that is present is checked even when empty: ``?status=`` is not "any status", it is a mistake.
    """
    outcome = None
    if "status" in params:
        try:
            outcome = AttemptOutcome(params["status"])
        except ValueError:
            known = ", ".join(o.value for o in AttemptOutcome)
            raise _bad(f"status must be one of {known}, not {params['status']!r}") from None
    bounds = {name: parse_api_time(name, params[name], now) if name in params else None for name in ("since", "until")}
    cursor = params.get("cursor")
    if cursor is not None and not _CURSOR.fullmatch(cursor):
        raise _bad("cursor must be the 'next' value of a previous page")
    limit_text = params.get("limit", str(DEFAULT_LIMIT))
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise _bad(f"limit must be a number from 1 to {MAX_LIMIT}")
    return AttemptQuery(outcome=outcome, since=bounds["since"], until=bounds["until"],
                        after_id=int(cursor) if cursor else None, limit=int(limit_text))  # fmt: skip


def parse_redeliver_body(data: Any, now: float) -> RedeliverRequest:
    """The redeliver body, exactly as the OpenAPI document's ``RedeliverRequest`` describes it: ``eventIds`` (a
    non-empty list of ids) or ``since`` (and ``until``), optionally ``to``. A field that is present must have its
    type: ``null`` is not "absent". An empty range (``until`` not after ``since``) holds nothing: 409, like a range
    without events, not a malformed request."""
    if not isinstance(data, dict):
        raise _bad('body must be a JSON object: {"eventIds": [...]} or {"since": "...", "until": "..."}')
    unknown = set(data) - {"eventIds", "since", "until", "to"}
    if unknown:
        raise _bad(f"unknown field(s): {', '.join(sorted(unknown))} (expected eventIds, since, until, to)")
    ids = data.get("eventIds", [])
    if "eventIds" in data and (not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids)):
        raise _bad("eventIds must be a non-empty list of event ids")
    if len(ids) > MAX_REDELIVERY:
        raise _bad(f"at most {MAX_REDELIVERY} event ids per redelivery")
    if "until" in data and "since" not in data:
        raise _bad("until needs since: give a time range with at least since")
    since, until = (parse_api_time(name, data[name], now) if name in data else None for name in ("since", "until"))
    to = data.get("to")
    if "to" in data and (not isinstance(to, str) or len(to) > NAME_MAX_LENGTH or not _NAME.fullmatch(to)):
        raise _bad(f"to must be the name of a Webhook in the same namespace, not {to!r}")
    if since is not None and until is not None and until <= since and not ids:
        raise IntakeError(409, "nothing to redeliver: the range is empty (until is not later than since)")
    try:
        return RedeliverRequest(tuple(dict.fromkeys(ids)), since, until, to)
    except ValueError as exc:
        raise _bad(str(exc)) from None


Route = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Work sharing (issue 15, ``sharing.forward``): ``(request, webhook key, body)`` → the owner replica's answer, or
#: None when this replica owns the webhook and acts itself.
Forward = Callable[[web.Request, str, bytes | None], Awaitable[web.StreamResponse | None]]
RETRY_AFTER = {"Retry-After": "1"}


def _operation(fn: Route) -> Route:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except OperationError as exc:
            raise IntakeError(exc.status, exc.message, headers=RETRY_AFTER if exc.status == 503 else None) from None
        except LeaseLost:  # the lease moved while acting: the new owner answers the retry
            key = _key(request)
            raise IntakeError(503, f"webhook {key} is being handed over between operator replicas; retry",
                              headers=RETRY_AFTER) from None  # fmt: skip

    return wrapped


def operation_routes(backend: OperationsBackend, *, clock: Callable[[], float] = time.time,
                     forward: Forward | None = None) -> list[web.RouteDef]:  # fmt: skip
    """``forward``: with several replicas, test, resume, skip and redeliver act where the lane is (the delivery
    log is read here, from the shared store)."""

    async def elsewhere(request: web.Request, key: str, body: bytes | None = None) -> web.StreamResponse | None:
        return await forward(request, key, body) if forward is not None else None

    async def deliveries(request: web.Request) -> web.Response:
        query = parse_query(request.query, clock())
        records = await backend.deliveries(_key(request), query)
        full = len(records) == query.limit
        return web.json_response({
            "webhook": _key(request), "items": [record_json(r) for r in records],
            "next": str(records[-1].id) if full and records and records[-1].id is not None else None,
        })  # fmt: skip

    async def test(request: web.Request) -> web.StreamResponse:
        if (answer := await elsewhere(request, _key(request))) is not None:
            return answer
        result = await backend.test(_key(request), caller_of(request).name, "http")
        return web.json_response(result_json(result))

    async def resume(request: web.Request) -> web.StreamResponse:
        if (answer := await elsewhere(request, _key(request))) is not None:
            return answer
        message = await backend.resume(_key(request), caller_of(request).name)
        return web.json_response({"message": message})

    async def skip(request: web.Request) -> web.StreamResponse:
        if (answer := await elsewhere(request, _key(request))) is not None:
            return answer
        skipped = await backend.skip(_key(request), caller_of(request).name)
        return web.json_response({"skipped": skipped, "message": f"skipped the held batch of {len(skipped)} event(s)"})

    async def redeliver(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_REQUEST_BODY:
            raise IntakeError(413, f"body of {request.content_length} bytes is larger than the limit of "
                                   f"{MAX_REQUEST_BODY}")  # fmt: skip
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
        lane = f"{request.match_info['namespace']}/{wanted.to}" if wanted.to else _key(request)  # the one requeued
        if (answer := await elsewhere(request, lane, raw)) is not None:
            return answer
        result = await backend.redeliver(_key(request), wanted, caller.name)
        message = f"{len(result.event_ids)} event(s) queued for redelivery to {result.target}"
        if result.filtered:
            message += f"; {len(result.filtered)} not sent: {result.target}'s filters do not admit them"
        return web.json_response({
            "target": result.target, "queued": result.event_ids, "missing": result.missing,
            "filtered": result.filtered, "message": message,
        }, status=202)  # fmt: skip

    return [
        web.get(WEBHOOK_PATH + "/deliveries", _operation(deliveries)),
        web.post(WEBHOOK_PATH + "/test", _operation(test)),
        web.post(WEBHOOK_PATH + "/resume", _operation(resume)),
        web.post(WEBHOOK_PATH + "/skip", _operation(skip)),
        web.post(WEBHOOK_PATH + "/redeliver", _operation(redeliver)),
    ]
