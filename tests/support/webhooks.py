"""Webhook manifests for tests: a valid base and a catalogue of invalid variants.

Each invalid case names the field the rejection must mention, so the same catalogue checks the API server (the
CRD) and the operator's own pydantic models, and a rule missing on either side fails a test.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CRD_FILE = ROOT / "crds" / "webhooks.yaml"
API_VERSION = "events.open-metadata.org/v1alpha1"
# The opt-in label a Secret needs before a Webhook may use it (spelled out, not imported: a rename must fail tests).
SECRET_LABEL = "events.open-metadata.org/webhook-secret"


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def example_webhooks() -> list[dict[str, Any]]:
    return [doc for path in EXAMPLES for doc in load_documents(path) if doc["kind"] == "Webhook"]


def base_spec() -> dict[str, Any]:
    return {
        "webhookType": "Generic",
        "eventFilters": [{"eventType": "entityCreated", "entities": ["table"]}],
        "webhookConfig": {"endpoint": "https://receiver.example.com/hook"},
    }


def single_spec(url: str, **cfg: Any) -> dict[str, Any]:
    """A valid spec delivering one event per request to ``url`` (end-to-end tests)."""
    spec = base_spec()
    spec["batchSize"] = 1
    spec["webhookConfig"] = {"endpoint": url, "timeout": 5, **cfg}
    return spec


def manifest(name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": "Webhook", "metadata": metadata, "spec": spec}


def webhook_secret(name: str, namespace: str | None = None, **string_data: str) -> dict[str, Any]:
    """A Secret that Webhooks may use: it carries the opt-in label."""
    metadata: dict[str, Any] = {"name": name, "labels": {SECRET_LABEL: "true"}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque", "stringData": string_data}


@dataclass(frozen=True)
class Invalid:
    id: str
    mutate: Callable[[dict[str, Any]], None]
    field: str  # must appear in the API server's error message
    pydantic_loc: str  # must appear in pydantic's error (dotted alias path)

    def spec(self) -> dict[str, Any]:
        spec = copy.deepcopy(base_spec())
        self.mutate(spec)
        return spec


def _cfg(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["webhookConfig"].update(values)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda s: s.__setitem__(key, value)


def _pop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda s: s.pop(key)


def _filter0(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["eventFilters"][0].update(values)


REF = {"name": "hmac", "key": "secret"}

INVALID: list[Invalid] = [
    Invalid("wrong-webhook-type", _set("webhookType", "Discord"), "spec.webhookType", "webhookType"),
    Invalid("missing-webhook-type", _pop("webhookType"), "spec.webhookType", "webhookType"),
    Invalid(
        "missing-endpoint",
        lambda s: s["webhookConfig"].pop("endpoint"),
        "spec.webhookConfig.endpoint",
        "webhookConfig.endpoint",
    ),
    Invalid("endpoint-not-a-url", _cfg(endpoint="not a url"), "spec.webhookConfig.endpoint", "webhookConfig.endpoint"),
    Invalid(
        "endpoint-ftp",
        _cfg(endpoint="ftp://files.example.com/x"),
        "spec.webhookConfig.endpoint",
        "webhookConfig.endpoint",
    ),
    Invalid(
        "endpoint-relative", _cfg(endpoint="/relative/path"), "spec.webhookConfig.endpoint", "webhookConfig.endpoint"
    ),
    Invalid("endpoint-no-host", _cfg(endpoint="https://"), "spec.webhookConfig.endpoint", "webhookConfig.endpoint"),
    Invalid("batch-size-zero", _set("batchSize", 0), "spec.batchSize", "batchSize"),
    Invalid("batch-size-huge", _set("batchSize", 100000), "spec.batchSize", "batchSize"),
    Invalid("timeout-zero", _cfg(timeout=0), "spec.webhookConfig.timeout", "webhookConfig.timeout"),
    Invalid("timeout-huge", _cfg(timeout=86400), "spec.webhookConfig.timeout", "webhookConfig.timeout"),
    Invalid(
        "secret-key-and-ref",
        _cfg(secretKey="inline", secretKeyRef=REF),
        "spec.webhookConfig.secretKeyRef",
        "webhookConfig",
    ),
    Invalid(
        "secret-ref-without-key",
        _cfg(secretKeyRef={"name": "hmac"}),
        "spec.webhookConfig.secretKeyRef.key",
        "webhookConfig.secretKeyRef.key",
    ),
    Invalid("empty-event-filters", _set("eventFilters", []), "spec.eventFilters", "eventFilters"),
    Invalid("missing-event-filters", _pop("eventFilters"), "spec.eventFilters", "eventFilters"),
    Invalid(
        "wrong-event-type",
        _filter0(eventType="entityExploded"),
        "spec.eventFilters[0].eventType",
        "eventFilters.0.eventType",
    ),
    Invalid(
        "filter-without-event-type",
        lambda s: s["eventFilters"][0].pop("eventType"),
        "spec.eventFilters[0].eventType",
        "eventFilters.0.eventType",
    ),
    Invalid("unknown-spec-field", _set("color", "blue"), 'unknown field "spec.color"', "color"),
    Invalid(
        "unknown-filter-field",
        _filter0(severity="high"),
        'unknown field "spec.eventFilters[0].severity"',
        "eventFilters.0.severity",
    ),
    Invalid(
        "bad-header-name", _cfg(headers={"Bad Header": "x"}), "spec.webhookConfig.headers", "webhookConfig.headers"
    ),
    Invalid(
        "bad-header-from-name",
        _cfg(headersFrom=[{"name": "Bad:Name", "secretKeyRef": REF}]),
        "spec.webhookConfig.headersFrom[0].name",
        "webhookConfig.headersFrom.0.name",
    ),
    Invalid(
        "template-without-custom",
        _cfg(payloadTemplate="{{ events }}"),
        "spec.webhookConfig.payloadTemplate",
        "payloadTemplate",
    ),
    Invalid("enabled-not-boolean", _set("enabled", "yes"), "spec.enabled", "enabled"),
    Invalid(
        "wrong-signature-scheme",
        _cfg(signatureScheme="md5"),
        "spec.webhookConfig.signatureScheme",
        "webhookConfig.signatureScheme",
    ),
    Invalid("tag-without-fqn", _set("tags", [{"source": "Classification"}]), "spec.tags[0].tagFQN", "tags.0.tagFQN"),
    Invalid("owner-without-type", _set("owner", {"name": "DataEngineering"}), "spec.owner.type", "owner.type"),
]
