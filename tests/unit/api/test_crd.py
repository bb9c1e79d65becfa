"""The CRD is generated from the models, structural, committed without drift, and agrees with the models."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from support.webhooks import CRD_FILE, INVALID, Invalid, base_spec, example_webhooks
from webhook_operator.api.crd import build_crd, render_crd
from webhook_operator.api.webhook import SignatureScheme, WebhookSpec, WebhookType


def test_committed_crd_matches_generator() -> None:
    assert CRD_FILE.read_text() == render_crd(), "crds/webhooks.yaml is stale: run `make crds`"


def _walk(node: Any, path: str = "$") -> list[str]:
    problems: list[str] = []
    if isinstance(node, dict):
        for banned in ("$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "title"):
            if banned in node:
                problems.append(f"{path}: {banned}")
        if ("properties" in node or "items" in node or "additionalProperties" in node) and "type" not in node:
            problems.append(f"{path}: no type")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties false")
        for key, value in node.items():
            if key == "properties":
                for name, sub in value.items():
                    if "type" not in sub and not sub.get("x-kubernetes-preserve-unknown-fields"):
                        problems.append(f"{path}.{name}: no type")
                    problems += _walk(sub, f"{path}.{name}")
            elif key in ("items", "additionalProperties"):
                problems += _walk(value, f"{path}[]")
    return problems


def test_schema_is_structural() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema) == []
    spec = schema["properties"]["spec"]
    assert spec["properties"]["webhookConfig"]["properties"]["headers"]["additionalProperties"] == {"type": "string"}
    assert spec["properties"]["owner"]["nullable"] is True


def test_crd_names_and_status_subresource() -> None:
    crd = yaml.safe_load(render_crd())
    assert crd["metadata"]["name"] == "webhooks.events.open-metadata.org"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], crd["spec"]["scope"]) == ("Webhook", "webhooks", "Namespaced")
    assert names["shortNames"] and names["categories"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    for name in ("Type", "Status", "Ready", "Delivered", "Failed", "Last Success", "Age"):
        assert columns[name].get("priority", 0) == 0, name
    for name in ("Endpoint", "Next Attempt"):
        assert columns[name]["priority"] == 1
    assert columns["Last Success"]["type"] == "date"


def test_enums_and_defaults_follow_the_seed() -> None:
    assert [t.value for t in WebhookType] == ["Generic", "Slack", "MSTeams", "GoogleChat", "Custom"]
    spec = WebhookSpec.model_validate(base_spec())
    assert spec.enabled is True and spec.batch_size == 10 and spec.webhook_config.timeout == 10
    cfg = spec.webhook_config
    assert (cfg.send_to_admins, cfg.send_to_owners, cfg.send_to_followers) == (False, False, False)
    assert cfg.signature_scheme is SignatureScheme.OPENMETADATA


@pytest.mark.parametrize("example", example_webhooks(), ids=lambda e: e["metadata"]["name"])
def test_examples_are_valid_specs(example: dict[str, Any]) -> None:
    spec = WebhookSpec.model_validate(example["spec"])
    # Round trip without loss: what the model dumps is what the manifest said (plus defaults).
    dumped = spec.model_dump(by_alias=True, exclude_defaults=True, mode="json")
    assert _subset(dumped, example["spec"])
    assert spec.webhook_config.secret_key is None, "examples keep secrets in Secrets"


def _subset(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(map(_subset, small, big))
    return bool(small == big)


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_models_reject_what_the_api_server_rejects(case: Invalid) -> None:
    with pytest.raises(ValidationError) as info:
        WebhookSpec.model_validate(case.spec())
    locs = [".".join(str(p) for p in err["loc"]) for err in info.value.errors(include_url=False)]
    assert any(case.pydantic_loc in loc for loc in locs) or case.pydantic_loc in str(info.value), locs
