"""The OpenAPI 3.1 document of the intake, generated from the ChangeEvent model so it cannot drift from the code.

The request schemas are the pydantic JSON schema of ``ChangeEvent`` (OpenAPI 3.1 is JSON Schema 2020-12, so it is
used as-is), with one correction: ``entity`` is declared as an object *or a JSON string*, which the model accepts
through a validator the JSON schema cannot see. The document is committed as ``docs/openapi/intake.json`` and a test
fails when it differs from what this module renders; regenerate with::

    .venv/bin/python -m webhook_operator.intake.openapi > docs/openapi/intake.json
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

from webhook_operator import __version__
from webhook_operator.api.events import LIFECYCLE_EVENT_TYPES, ChangeEvent
from webhook_operator.api.limits import MAX_DEPTH
from webhook_operator.api.operations import MAX_REDELIVERY
from webhook_operator.intake.auth import OM_SIGNATURE_HEADER, SEED_SIGNATURE_HEADER
from webhook_operator.intake.operations import WEBHOOK_PATH
from webhook_operator.intake.parsing import DEFAULT_MAX_EVENTS
from webhook_operator.store.base import AttemptOutcome

EVENTS_PATH = "/api/v1/events"
OPENAPI_PATH = "/api/v1/openapi.json"
RETRY_AFTER_SECONDS = 5

_REF = "#/components/schemas/{model}"
_JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _drop_property_titles(schema: dict[str, Any]) -> None:
    # pydantic titles every property after its Python name ("Fieldsadded"); they add noise and no meaning.
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)


def _event_schemas() -> dict[str, dict[str, Any]]:
    schema = copy.deepcopy(ChangeEvent.model_json_schema(by_alias=True, ref_template=_REF, mode="validation"))
    schemas: dict[str, dict[str, Any]] = schema.pop("$defs", {})
    schemas["ChangeEvent"] = schema
    for item in schemas.values():
        _drop_property_titles(item)
    props = schema["properties"]
    props["entity"] = {
        "anyOf": [
            {"type": "object", "additionalProperties": True},
            {"type": "string", "contentMediaType": "application/json"},
            {"type": "null"},
        ],
        "default": None,
        "description": "The entity after the change: an object, or the same object as JSON text (what current "
        "OpenMetadata servers send). A string that is not JSON is refused.",
    }
    props["eventType"]["description"] = (
        "Any value is accepted; Webhook filters can match " + ", ".join(LIFECYCLE_EVENT_TYPES) + "."
    )
    return schemas


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    if headers:
        response["headers"] = headers
    return response


def _operations_schemas() -> dict[str, dict[str, Any]]:
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
                "webhook": text, "items": {"type": "array", "items": _ref("DeliveryLogEntry")},
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
            "description": "Either eventIds, or since (and until): the events this Webhook delivered or skipped that "
            "were accepted in [since, until). Times are RFC 3339 or ages (2h).",
            "properties": {
                "eventIds": {"type": "array", "items": text, "maxItems": MAX_REDELIVERY}, "since": text,
                "until": text, "to": {"type": "string", "description": "Another Webhook in the same namespace."},
            },
        },
        "RedeliverResult": {
            "type": "object",
            "properties": {"target": text, "queued": {"type": "array", "items": text},
                           "missing": {"type": "array", "items": text}, "message": text},
        },
    }  # fmt: skip


def _operations_paths(www_authenticate: dict[str, Any], retry_after: dict[str, Any]) -> dict[str, Any]:
    def json_body(name: str) -> dict[str, Any]:
        return {"content": {"application/json": {"schema": _ref(name)}}}

    def errors(*statuses: str) -> dict[str, Any]:
        texts = {
            "400": _error(
                f"A bad parameter or body, e.g. one nested deeper than {MAX_DEPTH} levels (named in `error`)."
            ),
            "401": _error("No token, or one the API server (TokenReview) does not accept.", www_authenticate),
            "403": _error("The caller may not get (read) or patch (operate) this Webhook (SubjectAccessReview)."),
            "404": _error("No such Webhook served by this operator."),
            "409": _error("Nothing to do in the Webhook's current state (nothing held, disabled target, ...)."),
            "503": _error("The Kubernetes API could not be asked about the caller; retry.", retry_after),
        }
        return {status: texts[status] for status in statuses}

    webhook = [
        {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    query = [
        {"name": "status", "in": "query", "schema": {"enum": [o.value for o in AttemptOutcome]}},
        {"name": "since", "in": "query", "schema": {"type": "string"}, "description": "RFC 3339 or an age (1h)."},
        {"name": "until", "in": "query", "schema": {"type": "string"}, "description": "RFC 3339 or an age."},
        {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "`next` of the last page."},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    ]
    security: list[dict[str, list[str]]] = [{"kubernetesToken": []}]

    def post(op: str, summary: str, result: str, status: str = "200", **extra: Any) -> dict[str, Any]:
        return {"post": {"operationId": op, "summary": summary, "security": security, "parameters": webhook,
                         **extra, "responses": {status: {"description": summary, **json_body(result)},
                                                **errors("400", "401", "403", "404", "409", "503")}}}  # fmt: skip

    base = WEBHOOK_PATH
    return {
        base + "/deliveries": {"get": {
            "operationId": "getDeliveries", "summary": "The Webhook's delivery log, oldest first (docs/operations.md)",
            "security": security, "parameters": webhook + query,
            "responses": {"200": {"description": "A page of the log.", **json_body("DeliveryLogPage")},
                          **errors("400", "401", "403", "404", "503")},
        }},
        base + "/test": post("testWebhook", "Send a synthetic test event; the result is also status.lastTest",
                             "TestResult"),
        base + "/resume": post("resumeWebhook", "Send the held batch now", "OperationResult"),
        base + "/skip": post("skipHeldBatch", "Drop the held batch (logged) and go on", "OperationResult"),
        base + "/redeliver": post("redeliverEvents", "Queue past events again, in acceptance order",
                                  "RedeliverResult", "202",
                                  requestBody={"required": True, **json_body("RedeliverRequest")}),
    }  # fmt: skip


def openapi_document() -> dict[str, Any]:
    """The document as JSON-ready data."""
    schemas = _event_schemas()
    schemas |= {
        "ChangeEventBatch": {
            "type": "array",
            "items": _ref("ChangeEvent"),
            "minItems": 1,
            "maxItems": DEFAULT_MAX_EVENTS,
            "description": f"Several events; all valid or none accepted. At most {DEFAULT_MAX_EVENTS:,} by default "
            "(configurable; 413 above).",
        },
        "ChangeEventList": {
            "type": "object",
            "required": ["data"],
            "properties": {"data": _ref("ChangeEventBatch"), "paging": {"type": "object"}},
            "description": "The list shape of OpenMetadata's legacy webhook publisher; `paging` is ignored.",
        },
        "DestinationTest": {
            "type": "object",
            "required": ["message"],
            "additionalProperties": False,
            "properties": {"message": {"type": "string"}},
            "description": "What OpenMetadata's 'test destination' button sends; answered 200, nothing stored.",
        },
        "SubmitResult": {
            "type": "object",
            "required": ["accepted", "duplicates", "queued"],
            "properties": {
                "accepted": {"type": "integer", "minimum": 0, "description": "New events, now stored."},
                "duplicates": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Events whose id was already accepted (ignored; redelivery is safe).",
                },
                "queued": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Deliveries queued: an event matching three Webhooks counts three.",
                },
            },
        },
        **_operations_schemas(),
        "Error": {
            "type": "object",
            "required": ["error", "status"],
            "properties": {
                "error": {"type": "string", "description": "What is wrong, naming the field: data[3].timestamp: ..."},
                "status": {"type": "integer", "description": "The HTTP status, repeated."},
            },
        },
    }
    signature_params = [
        {
            "name": OM_SIGNATURE_HEADER,
            "in": "header",
            "required": False,
            "description": "OpenMetadata's signature: sha256=<base64 HMAC-SHA256(secret, raw body)>. Required (this "
            "or the next) when the intake has an HMAC secret.",
            "schema": {"type": "string", "pattern": "^sha256=[A-Za-z0-9+/]+={0,2}$"},
        },
        {
            "name": SEED_SIGNATURE_HEADER,
            "in": "header",
            "required": False,
            "description": "The seed's signature: sha256=<hex HMAC-SHA256(secret, raw body)>.",
            "schema": {"type": "string", "pattern": "^sha256=[0-9a-fA-F]{64}$"},
        },
    ]
    retry_after = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}}
    www_authenticate = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="..."'}}
    post = {
        "operationId": "postEvents",
        "summary": "Accept OpenMetadata ChangeEvents",
        "description": "Validates every event, stores them durably and routes them to the matching Webhooks. A 202 "
        "is sent only after the store committed; any error means nothing was accepted, so the sender may retry "
        "the whole post (ids already accepted count as duplicates).",
        "parameters": signature_params,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            _ref("ChangeEvent"),
                            _ref("ChangeEventBatch"),
                            _ref("ChangeEventList"),
                            _ref("DestinationTest"),
                        ]
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "A destination test ping; nothing stored.",
                "content": {"application/json": {"schema": _ref("SubmitResult")}},
            },
            "202": {
                "description": "Stored and routed.",
                "content": {"application/json": {"schema": _ref("SubmitResult")}},
            },
            "400": _error(
                "Not JSON, not a ChangeEvent, an empty batch, a field is invalid, or the body (or a "
                f"string-valued `entity`) is nested deeper than {MAX_DEPTH} levels (named in `error`)."
            ),
            "401": _error("Missing or wrong bearer token, or missing or wrong signature.", www_authenticate),
            "413": _error("Body larger than the configured limit, or too many events in one post."),
            "415": _error("Content-Type is not application/json (or a +json type)."),
            "503": _error("Not ready (Webhooks still loading) or the store is unavailable; retry.", retry_after),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "webhook-operator event intake and operations API",
            "version": __version__,
            "description": "Receives OpenMetadata ChangeEvents and delivers them to the Webhooks declared as "
            "Kubernetes resources. See docs/intake.md and docs/operations.md.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [
            {
                "url": "http://webhook-operator.{namespace}.svc:8080",
                "variables": {"namespace": {"default": "webhook-operator"}},
            }
        ],
        "security": [{"bearerAuth": []}],
        "paths": {
            EVENTS_PATH: {"post": post},
            **_operations_paths(www_authenticate, retry_after),
            OPENAPI_PATH: {
                "get": {
                    "operationId": "getOpenAPI",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "The OpenAPI document.", "content": _JSON_OBJECT}},
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from the intake token file or Secret. Anonymous posting exists only "
                    "when the operator runs with --intake-allow-anonymous.",
                },
                "kubernetesToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Operations API: the caller's own Kubernetes token (TokenReview, then "
                    "SubjectAccessReview: get on the Webhook to read, patch to operate), or with --api-auth=tokens "
                    "an intake token. Also accepted in X-Webhook-Operator-Authorization (service proxy).",
                },
            },
        },
    }


def render_openapi() -> str:
    """The document as committed: pretty, keys sorted, UTF-8, trailing newline."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_openapi())
