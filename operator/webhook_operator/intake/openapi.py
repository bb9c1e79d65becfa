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
from webhook_operator.intake.auth import OM_SIGNATURE_HEADER, SEED_SIGNATURE_HEADER
from webhook_operator.intake.parsing import DEFAULT_MAX_EVENTS

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
            "400": _error("Not JSON, not a ChangeEvent, an empty batch, or a field is invalid (named in `error`)."),
            "401": _error("Missing or wrong bearer token, or missing or wrong signature.", www_authenticate),
            "413": _error("Body larger than the configured limit, or too many events in one post."),
            "415": _error("Content-Type is not application/json (or a +json type)."),
            "503": _error("Not ready (Webhooks still loading) or the store is unavailable; retry.", retry_after),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "webhook-operator event intake",
            "version": __version__,
            "description": "Receives OpenMetadata ChangeEvents and delivers them to the Webhooks declared as "
            "Kubernetes resources. See docs/intake.md.",
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
                }
            },
        },
    }


def render_openapi() -> str:
    """The document as committed: pretty, keys sorted, UTF-8, trailing newline."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_openapi())
