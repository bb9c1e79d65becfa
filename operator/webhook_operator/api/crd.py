"""Generate the Webhook CustomResourceDefinition from the pydantic models.

Kubernetes accepts only *structural* schemas: a type at every level, no ``$ref``/``definitions``, no ``anyOf`` for
optionality, no ``additionalProperties: false``. pydantic emits all of those, so this module rewrites its JSON
Schema: references are inlined, ``X | None`` becomes ``X`` with ``nullable: true``, titles are dropped, and the
Kubernetes keywords the models carry in ``json_schema_extra`` pass through untouched. ``crds/webhooks.yaml`` is this
module's output, and a test fails when the two drift.
"""

from __future__ import annotations

from typing import Any

import yaml

from webhook_operator.api.webhook import WebhookSpec, WebhookStatus

GROUP = "events.open-metadata.org"
VERSION = "v1alpha1"
KIND = "Webhook"
PLURAL = "webhooks"
SINGULAR = "webhook"
SHORT_NAMES = ["omwh"]
CATEGORIES = ["openmetadata"]
API_VERSION = f"{GROUP}/{VERSION}"

_DROP = {"title", "additionalProperties", "$defs"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        target = _resolve(defs[ref.rsplit("/", 1)[-1]], defs)
        # A field's own description and extras win over the referenced model's docstring.
        node = {**target, **{k: v for k, v in node.items()}}
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        branches = [b for b in any_of if b != {"type": "null"}]
        if len(branches) != 1:
            raise ValueError(f"cannot express anyOf {any_of!r} structurally")
        inner = _resolve(branches[0], defs)
        node = {
            **inner,
            **{k: v for k, v in node.items() if k != "default" or v is not None},
            "nullable": True,
        }
        if node.get("default", 0) is None:
            node.pop("default")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP and not (key == "additionalProperties" and isinstance(value, dict)):
            continue
        if key == "properties":
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
        elif key in {"items", "additionalProperties"}:
            out[key] = _resolve(value, defs)
        else:
            out[key] = value
    if out.get("nullable") and "default" in out and out["default"] is None:
        del out["default"]
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "const" in out:
        out["enum"] = [out.pop("const")]
    return _ordered(out)


_FIRST = ("description", "type", "format", "nullable", "default", "enum")


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """Stable, readable key order: what a reader looks for first, then the rest alphabetically."""
    head = [k for k in _FIRST if k in node]
    return {k: node[k] for k in [*head, *sorted(k for k in node if k not in _FIRST)]}


def structural_schema(model: type[Any], description: str) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
    defs = raw.get("$defs", {})
    schema: dict[str, Any] = _resolve(raw, defs)
    schema["description"] = description
    return schema


def _printer_columns() -> list[dict[str, Any]]:
    ready = '.status.conditions[?(@.type=="Ready")].status'
    return [
        {"name": "Type", "type": "string", "jsonPath": ".spec.webhookType"},
        {"name": "Status", "type": "string", "jsonPath": ".status.status"},
        {"name": "Ready", "type": "string", "jsonPath": ready},
        {"name": "Delivered", "type": "integer", "jsonPath": ".status.counts.delivered"},
        {"name": "Failed", "type": "integer", "jsonPath": ".status.counts.failed"},
        {"name": "Last Success", "type": "date", "jsonPath": ".status.lastSuccessfulAt"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Pending", "type": "integer", "jsonPath": ".status.counts.pending", "priority": 1},
        {"name": "Endpoint", "type": "string", "jsonPath": ".spec.webhookConfig.endpoint", "priority": 1},
        {"name": "Version", "type": "number", "jsonPath": ".status.version", "priority": 1},
        {"name": "Fallback", "type": "string", "jsonPath": ".spec.fallback.name", "priority": 1},
        {"name": "Fallback Active", "type": "boolean", "jsonPath": ".status.fallbackActive", "priority": 1},
        {"name": "Triggers", "type": "string", "jsonPath": ".spec.triggers[*].name", "priority": 1},
        {
            "name": "Next Attempt",
            "type": "date",
            "jsonPath": ".status.failureDetails.nextAttempt",
            "priority": 1,
        },
        {
            "name": "Message",
            "type": "string",
            "priority": 1,
            "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
        },
    ]


def build_crd() -> dict[str, Any]:
    spec = structural_schema(
        WebhookSpec,
        "A Webhook enables real-time event notifications via HTTP callbacks. Entity fields that Kubernetes owns "
        "(id, name, href, deleted) live in metadata; version, updatedAt, updatedBy and changeDescription in status.",
    )
    status = structural_schema(
        WebhookStatus, "Delivery state written by webhook-operator through the status subresource."
    )
    root = {
        "type": "object",
        "description": "A Webhook enables real-time event notifications via HTTP callbacks (OpenMetadata Webhook "
        "entity as a Kubernetes resource).",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "webhook-operator",
                "app.kubernetes.io/part-of": "webhook-operator",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = "# Generated by `webhook-operator crd` from webhook_operator.api.webhook. Do not edit by hand.\n"


class _NoAliasDumper(yaml.SafeDumper):
    """Shared sub-schemas must be written out in full: kubectl and GitOps diff tools do not expand YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_crd() -> str:
    body = yaml.dump(build_crd(), Dumper=_NoAliasDumper, sort_keys=False, width=120, allow_unicode=True)
    return HEADER + body
