"""The Webhook CRD on a real API server: examples round-trip, defaults, explain, rejections, printer columns."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from support.cluster import Cluster, wait_for
from support.webhooks import EXAMPLES, INVALID, Invalid, base_spec, load_documents, manifest


def _subset(small: Any, big: Any, path: str = "") -> list[str]:
    if isinstance(small, dict):
        if not isinstance(big, dict):
            return [path]
        return [
            p for k, v in small.items() for p in (_subset(v, big[k], f"{path}.{k}") if k in big else [f"{path}.{k}"])
        ]
    if isinstance(small, list):
        if not isinstance(big, list) or len(small) != len(big):
            return [path]
        return [p for i, (a, b) in enumerate(zip(small, big, strict=True)) for p in _subset(a, b, f"{path}[{i}]")]
    return [] if small == big else [path]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_apply_and_read_back_unchanged(cluster: Cluster, webhook_crd: None, namespace: str, path: Any) -> None:
    result = cluster.kubectl("apply", "--validate=strict", "-n", namespace, "-f", str(path))
    assert "Warning" not in result.stderr, result.stderr
    for doc in load_documents(path):
        if doc["kind"] != "Webhook":
            continue
        stored = cluster.get_json("webhook", doc["metadata"]["name"], "-n", namespace)
        assert _subset(doc["spec"], stored["spec"]) == [], "fields pruned or changed"
    # Applying the same manifest again changes nothing (GitOps: no perpetual diff).
    again = cluster.kubectl("apply", "--validate=strict", "-n", namespace, "-f", str(path)).stdout
    for doc in load_documents(path):
        if doc["kind"] == "Webhook":
            assert f"webhook.events.open-metadata.org/{doc['metadata']['name']} unchanged" in again, again


def test_defaults_are_applied_by_the_api_server(cluster: Cluster, webhook_crd: None, namespace: str) -> None:
    cluster.apply(manifest("defaults", base_spec(), namespace))
    spec = cluster.get_json("webhook", "defaults", "-n", namespace)["spec"]
    assert spec["enabled"] is True and spec["batchSize"] == 10
    cfg = spec["webhookConfig"]
    assert cfg["timeout"] == 10 and cfg["signatureScheme"] == "OpenMetadata"
    assert (cfg["sendToAdmins"], cfg["sendToOwners"], cfg["sendToFollowers"]) == (False, False, False)


def test_explain_shows_the_seed_descriptions(cluster: Cluster, webhook_crd: None) -> None:
    def explain() -> str:
        return cluster.kubectl("explain", "webhook.spec.webhookConfig", check=False).stdout

    wait_for(lambda: "endpoint" in explain(), 30, "the OpenAPI schema to be published")
    text = explain()
    for phrase in (
        "Configuration for webhook endpoint",
        "HTTP endpoint URL",
        "Secret key for HMAC signature",
        "Request timeout in seconds",
        "Custom headers to include in requests",
        "Extension",
    ):
        assert phrase in text, phrase
    assert "Maximum number of events to send in a batch" in cluster.kubectl("explain", "webhook.spec").stdout


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_manifest_is_rejected_naming_the_field(
    cluster: Cluster, webhook_crd: None, module_namespace: str, case: Invalid
) -> None:
    namespace = module_namespace
    result = cluster.apply(manifest(f"bad-{case.id}"[:63], case.spec(), namespace), "--validate=strict", check=False)
    assert result.returncode != 0, f"{case.id} was accepted"
    assert case.field in result.stderr, result.stderr
    assert cluster.kubectl("get", "webhook", f"bad-{case.id}"[:63], "-n", namespace, check=False).returncode != 0


def test_duplicate_header_from_names_are_rejected(cluster: Cluster, webhook_crd: None, namespace: str) -> None:
    spec = base_spec()
    ref = {"name": "s", "key": "k"}
    spec["webhookConfig"]["headersFrom"] = [{"name": "X-A", "secretKeyRef": ref}, {"name": "X-A", "secretKeyRef": ref}]
    result = cluster.apply(manifest("dup-headers", spec, namespace), check=False)
    assert result.returncode != 0 and "spec.webhookConfig.headersFrom[1]" in result.stderr, result.stderr


def test_printer_columns_and_status_subresource(cluster: Cluster, webhook_crd: None, namespace: str) -> None:
    cluster.apply(manifest("cols", base_spec(), namespace))
    status = {
        "observedGeneration": 1,
        "status": "awaitingRetry",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "DeliveryFailing",
                "message": "HTTP 503 from endpoint",
                "lastTransitionTime": "2026-11-27T09:00:00Z",
                "observedGeneration": 1,
            }
        ],
        "failureDetails": {
            "lastFailedAt": "2026-11-27T09:00:00Z",
            "lastFailedStatusCode": 503,
            "lastFailedReason": "HTTP 503",
            "nextAttempt": "2099-01-01T00:00:00Z",
        },
        "lastSuccessfulAt": "2026-11-27T08:00:00Z",
        "counts": {"delivered": 42, "failed": 3, "pending": 7},
    }
    cluster.kubectl(
        "patch",
        "webhook",
        "cols",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    # A status sent through the main resource is ignored: only the subresource writes status.
    cluster.kubectl(
        "patch",
        "webhook",
        "cols",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"status": {"counts": {"delivered": 0}}}),
    )
    assert cluster.get_json("webhook", "cols", "-n", namespace)["status"]["counts"]["delivered"] == 42

    table = cluster.kubectl("get", "webhooks", "-n", namespace).stdout.splitlines()
    header = table[0].split()
    for column in ("NAME", "TYPE", "STATUS", "READY", "DELIVERED", "FAILED", "LAST", "SUCCESS", "AGE"):
        assert column in header, table[0]
    row = table[1].split()
    assert row[:6] == ["cols", "Generic", "awaitingRetry", "False", "42", "3"], table[1]
    wide = cluster.kubectl("get", "webhooks", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert "ENDPOINT" in wide[0] and "NEXT ATTEMPT" in wide[0] and "PENDING" in wide[0], wide[0]
    assert "https://receiver.example.com/hook" in wide[1]
    # Categories and short names resolve.
    assert "cols" in cluster.kubectl("get", "openmetadata", "-n", namespace).stdout
    assert "cols" in cluster.kubectl("get", "omwh", "-n", namespace).stdout


def test_bad_status_is_rejected_too(cluster: Cluster, webhook_crd: None, namespace: str) -> None:
    cluster.apply(manifest("badstatus", copy.deepcopy(base_spec()), namespace))
    result = cluster.kubectl(
        "patch",
        "webhook",
        "badstatus",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"status": "exploded"}}),
        check=False,
    )
    assert result.returncode != 0 and "status.status" in result.stderr
