"""The committed OpenAPI document is what the code renders, and it is a self-consistent OpenAPI 3.1 document."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support.events import ROOT
from webhook_operator.api.events import ChangeEvent
from webhook_operator.intake.auth import SIGNATURE_PATTERNS
from webhook_operator.intake.openapi import openapi_document, render_openapi
from webhook_operator.intake.operations import AGE_PATTERN, CURSOR_PATTERN, NAME_PATTERN, RFC3339_PATTERN

COMMITTED = ROOT / "docs" / "openapi" / "intake.json"
REGENERATE = ".venv/bin/python -m webhook_operator.intake.openapi > docs/openapi/intake.json"


def test_committed_document_matches_the_generated_one() -> None:
    assert COMMITTED.exists(), f"{COMMITTED} is missing; run: {REGENERATE}"
    assert COMMITTED.read_text(encoding="utf-8") == render_openapi(), (
        f"docs/openapi/intake.json is stale; run: {REGENERATE}"
    )


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_every_reference_resolves_and_every_schema_is_used() -> None:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    used = set()
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        name = ref.rsplit("/", 1)[1]
        assert name in schemas, ref
        used.add(name)
    assert used == set(schemas)


def test_document_describes_the_contract() -> None:
    doc = json.loads(render_openapi())
    assert doc["openapi"] == "3.1.0"
    post = doc["paths"]["/api/v1/events"]["post"]
    assert set(post["responses"]) == {"200", "202", "400", "401", "413", "415", "503", "507"}
    for status in ("400", "401", "413", "415", "503"):
        assert post["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    assert "Retry-After" in post["responses"]["503"]["headers"]
    assert "WWW-Authenticate" in post["responses"]["401"]["headers"]
    bearer = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/api/v1/openapi.json"]["get"]["security"] == []
    assert {p["name"] for p in post["parameters"]} == {"X-OM-Signature", "X-OpenMetadata-Signature"}


def test_event_schema_is_the_model_schema_with_entity_allowed_as_json_text() -> None:
    event = openapi_document()["components"]["schemas"]["ChangeEvent"]
    model = ChangeEvent.model_json_schema(by_alias=True)
    assert event["required"] == model["required"] == ["id", "eventType", "entityType", "entityId", "timestamp"]
    assert set(event["properties"]) == set(model["properties"])
    text = event["properties"]["entity"]["anyOf"][1]
    assert (text["type"], text["contentMediaType"], text["contentSchema"]) == (
        "string",
        "application/json",
        {"type": ["object", "null"]},
    )
    # The pattern is the part of "an object's JSON text" a validator can check: what matches may still fail to parse
    # (the code then refuses it), but nothing the code accepts fails to match.
    for accepted in ('{"a": 1}', " {}\n", "null", "\tnull "):
        assert re.search(text["pattern"], accepted), accepted
    for refused in ("{", "[1]", "5", '"x"', "nullx", "\u00a0{}"):
        assert not re.search(text["pattern"], refused), refused


def test_document_is_valid_json_with_sorted_keys_and_no_ascii_escaping() -> None:
    text = render_openapi()
    assert text.endswith("}\n")
    assert json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n" == text
    assert Path(COMMITTED).read_bytes().decode("utf-8") == text


def test_the_document_uses_the_patterns_the_code_enforces() -> None:
    """Written once: the operations API's parameter forms and the signature shapes come from the modules that check
    them, so the document cannot drift from the code (issue 13, item 11)."""
    doc = openapi_document()
    redeliver = doc["components"]["schemas"]["RedeliverRequest"]
    time_forms = redeliver["properties"]["since"]["anyOf"]
    assert time_forms == [{"format": "date-time", "pattern": RFC3339_PATTERN}, {"pattern": AGE_PATTERN}]
    assert redeliver["properties"]["to"]["pattern"] == NAME_PATTERN
    assert redeliver["properties"]["eventIds"]["items"] == {"type": "string", "minLength": 1}
    assert redeliver["oneOf"] == [{"required": ["eventIds"]}, {"required": ["since"]}]
    assert redeliver["dependentRequired"] == {"until": ["since"]}
    deliveries = doc["paths"]["/api/v1/namespaces/{namespace}/webhooks/{name}/deliveries"]["get"]
    query = {p["name"]: p["schema"] for p in deliveries["parameters"] if p["in"] == "query"}
    assert query["since"]["anyOf"] == query["until"]["anyOf"] == time_forms
    assert query["cursor"]["pattern"] == CURSOR_PATTERN
    headers = {p["name"]: p["schema"]["pattern"] for p in doc["paths"]["/api/v1/events"]["post"]["parameters"]}
    assert headers == SIGNATURE_PATTERNS


def test_the_signature_patterns_document_that_an_empty_header_counts_as_absent() -> None:
    """The intake reads an empty signature header as an absent one (``test_contract``); the document must say so, or
    a schema-driven client rightly reports the 202 to ``X-OpenMetadata-Signature;`` as a schema violation accepted
    (schemathesis did, ``tests/e2e/test_fuzz.py``). A non-empty value still has to be a whole signature."""
    for pattern in SIGNATURE_PATTERNS.values():
        assert re.fullmatch(pattern[1:-1], ""), pattern
        for refused in ("sha256=", "sha256", " ", "x"):
            assert not re.fullmatch(pattern[1:-1], refused), (pattern, refused)


def test_every_refusal_of_the_operations_api_is_documented() -> None:
    paths = openapi_document()["paths"]
    for path, item in paths.items():
        if "/webhooks/" not in path:
            continue
        for operation in item.values():
            assert {"400", "401", "403", "404", "429", "503"} <= set(operation["responses"]), path
    assert "413" in paths["/api/v1/namespaces/{namespace}/webhooks/{name}/redeliver"]["post"]["responses"]


def test_patterns_read_the_same_in_python_and_ecma_262() -> None:
    """No ``\\d``, ``\\w`` or ``\\s`` (Unicode in Python, ASCII in ECMA-262): the code and every validator of the
    document agree on what matches."""
    for pattern in (RFC3339_PATTERN, AGE_PATTERN, CURSOR_PATTERN, NAME_PATTERN, *SIGNATURE_PATTERNS.values()):
        assert not re.search(r"\\[dws]", pattern), pattern
        assert pattern.startswith("^") and pattern.endswith("$"), pattern
