"""The committed OpenAPI document is what the code renders, and it is a self-consistent OpenAPI 3.1 document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support.events import ROOT
from webhook_operator.api.events import ChangeEvent
from webhook_operator.intake.openapi import openapi_document, render_openapi

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
    assert set(post["responses"]) == {"200", "202", "400", "401", "413", "415", "503"}
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
    assert {"type": "string", "contentMediaType": "application/json"} in event["properties"]["entity"]["anyOf"]


def test_document_is_valid_json_with_sorted_keys_and_no_ascii_escaping() -> None:
    text = render_openapi()
    assert text.endswith("}\n")
    assert json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n" == text
    assert Path(COMMITTED).read_bytes().decode("utf-8") == text
