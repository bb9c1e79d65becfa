"""The operations API's part of the OpenAPI document (``intake.openapi`` assembles the whole): its schemas, paths and
documented refusals, and the two helpers both parts use.

Every parameter form is the pattern ``intake.operations`` enforces, imported rather than restated, so the document is
exactly as strict as the code (issue 13, item 11; ``tests/e2e/test_fuzz.py`` checks it against the running operator).
"""

from __future__ import annotations

from typing import Any

from webhook_operator.api.limits import MAX_DEPTH
from webhook_operator.api.operations import MAX_REDELIVERY
from webhook_operator.intake.operations import (
    AGE_PATTERN,
    CURSOR_PATTERN,
    MAX_LIMIT,
    MAX_REQUEST_BODY,
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    RFC3339_PATTERN,
    WEBHOOK_PATH,
)
from webhook_operator.store.base import AttemptOutcome

#: Where the document keeps its schemas (also pydantic's ``ref_template`` for the event schemas).
REF_TEMPLATE = "#/components/schemas/{model}"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=name)}


def error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ref("Error")}},
    }
    if headers:
        response["headers"] = headers
    return response


def _time_schema(description: str) -> dict[str, Any]:
    """``since``/``until``: exactly what ``intake.operations.parse_api_time`` accepts."""
    return {
        "type": "string",
        "anyOf": [{"format": "date-time", "pattern": RFC3339_PATTERN}, {"pattern": AGE_PATTERN}],
        "description": description + " RFC 3339 with a zone (2026-03-04T18:00:00Z), or an age before now: a "
        "number and s, m, h or d (90s, 1.5h, 7d).",
    }


def operations_schemas() -> dict[str, dict[str, Any]]:
    nullable_int = {"type": ["integer", "null"]}
    nullable_text = {"type": ["string", "null"]}
    text = {"type": "string"}
    return {
        "DeliveryLogEntry": {
            "type": "object",
            "description": "One HTTP attempt, or one operation (note says what and who asked). Secrets masked.",
            "properties": {
                "id": {"type": "integer"}, "time": {"type": "string", "format": "date-time"},
                "outcome": {"enum": [o.value for o in AttemptOutcome]}, "attempt": {"type": "integer"},
                "deliveryId": text, "eventIds": {"type": "array", "items": text}, "statusCode": nullable_int,
                "durationMs": {"type": "number"}, "error": nullable_text,
                "responseBody": {"type": "string", "description": "The receiver's answer, first 1024 characters."},
                "note": text,
            },
        },
        "DeliveryLogPage": {
            "type": "object",
            "properties": {
                "webhook": text, "items": {"type": "array", "items": ref("DeliveryLogEntry")},
                "next": {"type": ["string", "null"], "description": "Cursor of the next page; null on the last."},
            },
        },
        "TestResult": {
            "type": "object",
            "description": "The test delivery, as also written to status.lastTest.",
            "properties": {
                "time": {"type": "string", "format": "date-time"}, "success": {"type": "boolean"},
                "statusCode": nullable_int, "latencyMs": {"type": "number"}, "error": nullable_text,
                "eventId": text, "requestedBy": text, "trigger": nullable_text, "message": text,
            },
        },
        "OperationResult": {
            "type": "object",
            "properties": {"message": text, "skipped": {"type": "array", "items": text}},
        },
        "RedeliverRequest": {
            "type": "object",
            "additionalProperties": False,
            "oneOf": [{"required": ["eventIds"]}, {"required": ["since"]}],
            "dependentRequired": {"until": ["since"]},
            "description": "Either eventIds, or since (and until): the events this Webhook delivered or skipped that "
            "were accepted in [since, until). An empty range (until not after since) holds nothing: 409.",
            "properties": {
                "eventIds": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
                             "maxItems": MAX_REDELIVERY, "description": "Events routed to this Webhook."},
                "since": _time_schema("Start of the range (included)."),
                "until": _time_schema("End of the range (excluded); now when absent."),
                "to": {"type": "string", "pattern": NAME_PATTERN, "maxLength": NAME_MAX_LENGTH,
                       "description": "Another Webhook in the same namespace (its filters apply; patch on it too)."},
            },
        },
        "RedeliverResult": {
            "type": "object",
            "properties": {"target": text, "queued": {"type": "array", "items": text},
                           "missing": {"type": "array", "items": text, "description": "Requested ids not routed to "
                                       "this Webhook: never accepted, pruned, or another Webhook's (not told apart)."},
                           "filtered": {"type": "array", "items": text, "description": "This Webhook's events that "
                                        "the filters of the 'to' Webhook do not admit: not sent."},
                           "message": text},
        },
    }  # fmt: skip


def operations_paths(www_authenticate: dict[str, Any], retry_after: dict[str, Any]) -> dict[str, Any]:
    def json_body(name: str) -> dict[str, Any]:
        return {"content": {"application/json": {"schema": ref(name)}}}

    def errors(*statuses: str) -> dict[str, Any]:
        texts = {
            "400": error_response(
                f"A bad parameter or body, e.g. one nested deeper than {MAX_DEPTH} levels (named in `error`)."
            ),
            "401": error_response("No token, or one the API server (TokenReview) does not accept.", www_authenticate),
            "403": error_response(
                "The caller may not get (read) or patch (operate) this Webhook (SubjectAccessReview)."
            ),
            "404": error_response("No such Webhook served by this operator."),
            "409": error_response(
                "Nothing to do in the Webhook's current state (nothing held, disabled target, no events "
                "in the range, ...)."
            ),
            "413": error_response(f"Body larger than {MAX_REQUEST_BODY} bytes."),
            "429": error_response(
                "Too many failed authentications or reviews from this client; retry after the given seconds.",
                retry_after,
            ),
            "503": error_response(
                "The Kubernetes API could not be asked about the caller, or (several operator "
                "replicas) the Webhook is being handed over between them; retry.",
                retry_after,
            ),
        }
        return {status: texts[status] for status in statuses}

    webhook = [
        {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    query = [
        {"name": "status", "in": "query", "schema": {"enum": [o.value for o in AttemptOutcome]}},
        {"name": "since", "in": "query", "schema": _time_schema("Lines from then on.")},
        {"name": "until", "in": "query", "schema": _time_schema("Lines before then.")},
        {
            "name": "cursor",
            "in": "query",
            "schema": {"type": "string", "pattern": CURSOR_PATTERN},
            "description": "`next` of the last page.",
        },
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
    ]
    security: list[dict[str, list[str]]] = [{"kubernetesToken": []}]
    refusals = ("400", "401", "403", "404", "409", "429", "503")

    def post(op: str, summary: str, result: str, status: str = "200", *more: str, **extra: Any) -> dict[str, Any]:
        return {"post": {"operationId": op, "summary": summary, "security": security, "parameters": webhook,
                         **extra, "responses": {status: {"description": summary, **json_body(result)},
                                                **errors(*refusals, *more)}}}  # fmt: skip

    base = WEBHOOK_PATH
    return {
        base + "/deliveries": {"get": {
            "operationId": "getDeliveries", "summary": "The Webhook's delivery log, oldest first (docs/operations.md)",
            "security": security, "parameters": webhook + query,
            "responses": {"200": {"description": "A page of the log.", **json_body("DeliveryLogPage")},
                          **errors("400", "401", "403", "404", "429", "503")},
        }},
        base + "/test": post("testWebhook", "Send a synthetic test event; the result is also status.lastTest",
                             "TestResult"),
        base + "/resume": post("resumeWebhook", "Send the held batch now", "OperationResult"),
        base + "/skip": post("skipHeldBatch", "Drop the held batch (logged) and go on", "OperationResult"),
        base + "/redeliver": post("redeliverEvents", "Queue past events again, in acceptance order",
                                  "RedeliverResult", "202", "413",
                                  requestBody={"required": True, **json_body("RedeliverRequest")}),
    }  # fmt: skip
