"""The OpenAPI 3.1 document of the intake, generated from the ChangeEvent model so it cannot drift from the code.

The request schemas are the pydantic JSON schema of ``ChangeEvent`` (OpenAPI 3.1 is JSON Schema 2020-12, so it is
used as-is), corrected where the model's validators accept what its JSON schema cannot see: ``entity`` as an object
*or a JSON string* (an object's text, or ``null``), change lists that are ``null``.

The document is exact (issue 13, item 11): what it calls valid the code accepts, what it calls invalid the code
refuses, and every refusal is documented. ``tests/e2e/test_fuzz.py`` holds the two to that with schemathesis and all
its checks against the running operator. Patterns come from the modules that enforce them (``intake.operations``,
``intake.auth``), so they are written once. What JSON Schema cannot say is in the descriptions: the nesting limit
(``MAX_DEPTH``), the configurable size limits (413), an empty redelivery range (409).

The document is committed as ``docs/openapi/intake.json`` and a test fails when it differs from what this module
renders; regenerate with::

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
from webhook_operator.intake.auth import OM_SIGNATURE_HEADER, SEED_SIGNATURE_HEADER, SIGNATURE_PATTERNS
from webhook_operator.intake.openapi_operations import (
    REF_TEMPLATE,
    error_response,
    operations_paths,
    operations_schemas,
    ref,
)
from webhook_operator.intake.parsing import DEFAULT_MAX_EVENTS

EVENTS_PATH = "/api/v1/events"
OPENAPI_PATH = "/api/v1/openapi.json"
RETRY_AFTER_SECONDS = 5

_JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}
#: JSON's own whitespace (RFC 8259), not ECMA-262's ``\s``, which also takes Unicode spaces JSON does not.
_JSON_SPACE = r"[ \t\n\r]*"


def _drop_property_titles(schema: dict[str, Any]) -> None:
    # pydantic titles every property after its Python name ("Fieldsadded"); they add noise and no meaning.
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)


def _event_schemas() -> dict[str, dict[str, Any]]:
    schema = copy.deepcopy(ChangeEvent.model_json_schema(by_alias=True, ref_template=REF_TEMPLATE, mode="validation"))
    schemas: dict[str, dict[str, Any]] = schema.pop("$defs", {})
    schemas["ChangeEvent"] = schema
    for item in schemas.values():
        _drop_property_titles(item)
    props = schema["properties"]
    props["entity"] = {
        "anyOf": [
            {"type": "object", "additionalProperties": True},
            {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"type": ["object", "null"]},
                # An object's text or null: a JSON text of any other type is refused, and so is a string that is not
                # JSON at all (contentMediaType; NaN and Infinity are not JSON either).
                "pattern": f"^{_JSON_SPACE}(\\{{[\\s\\S]*\\}}|null){_JSON_SPACE}$",
            },
            {"type": "null"},
        ],
        "default": None,
        "description": "The entity after the change: an object, or the same object as JSON text (what current "
        f"OpenMetadata servers send), nested at most {MAX_DEPTH} levels. A string that is not the JSON text of an "
        "object (or null) is refused.",
    }
    props["eventType"]["description"] = (
        "Any value is accepted; Webhook filters can match " + ", ".join(LIFECYCLE_EVENT_TYPES) + "."
    )
    for name in ("fieldsAdded", "fieldsUpdated", "fieldsDeleted"):  # the model reads null as an empty list
        change_list = schemas["ChangeDescription"]["properties"][name]
        change_list["type"] = ["array", "null"]
        change_list["description"] = "null is the same as []."
    return schemas


def openapi_document() -> dict[str, Any]:
    """The document as JSON-ready data."""
    schemas = _event_schemas()
    schemas |= {
        "ChangeEventBatch": {
            "type": "array",
            "items": ref("ChangeEvent"),
            "minItems": 1,
            "maxItems": DEFAULT_MAX_EVENTS,
            "description": f"Several events; all valid or none accepted. At most {DEFAULT_MAX_EVENTS:,} by default "
            "(configurable; 413 above).",
        },
        "ChangeEventList": {
            "type": "object",
            "required": ["data"],
            "properties": {"data": ref("ChangeEventBatch"), "paging": {"description": "Ignored, whatever it is."}},
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
        **operations_schemas(),
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
            "or the next) when the intake has an HMAC secret. Without a secret a well-formed signature is ignored "
            "and a malformed one refused (400). Empty counts as absent.",
            "schema": {"type": "string", "pattern": SIGNATURE_PATTERNS[OM_SIGNATURE_HEADER]},
        },
        {
            "name": SEED_SIGNATURE_HEADER,
            "in": "header",
            "required": False,
            "description": "The seed's signature: sha256=<hex HMAC-SHA256(secret, raw body)>. Empty counts as absent.",
            "schema": {"type": "string", "pattern": SIGNATURE_PATTERNS[SEED_SIGNATURE_HEADER]},
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
                            # An object with `data` is read as the list shape, whatever else it holds.
                            {"allOf": [ref("ChangeEvent"), {"not": {"required": ["data"]}}]},
                            ref("ChangeEventBatch"),
                            ref("ChangeEventList"),
                            ref("DestinationTest"),
                        ]
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "A destination test ping; nothing stored.",
                "content": {"application/json": {"schema": ref("SubmitResult")}},
            },
            "202": {
                "description": "Stored and routed.",
                "content": {"application/json": {"schema": ref("SubmitResult")}},
            },
            "400": error_response(
                "Not JSON, not a ChangeEvent, an empty batch, a field is invalid, the body (or a "
                f"string-valued `entity`) is nested deeper than {MAX_DEPTH} levels, or a signature header is "
                "malformed while the intake has no secret (named in `error`)."
            ),
            "401": error_response("Missing or wrong bearer token, or missing or wrong signature.", www_authenticate),
            "413": error_response("Body larger than the configured limit, or too many events in one post."),
            "415": error_response("Content-Type is not application/json (or a +json type)."),
            "503": error_response(
                "Not ready (Webhooks still loading) or the store is unavailable; retry.", retry_after
            ),
            "507": error_response(
                "The event store is over its space budget (--store-max-bytes, named in `error`): nothing was "
                "accepted; retry later, when queues have drained or retention has freed space.",
                retry_after,
            ),
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
            **operations_paths(www_authenticate, retry_after),
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
