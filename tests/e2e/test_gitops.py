"""GitOps behaviour with the operator running: it never writes spec, adds no finalizer, uses its own annotation
prefix, and applying the same manifest again changes nothing (no perpetual diff for Argo CD / Flux)."""

from __future__ import annotations

import json

from support.cluster import Cluster
from support.operator import OperatorProcess, receiver, wait_status
from support.webhooks import base_spec, manifest


def test_reapplying_the_same_manifest_changes_nothing(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with receiver() as recv:
        spec = base_spec()
        spec["webhookConfig"] = {"endpoint": recv.url("gitops")}
        doc = manifest("gitops", spec, namespace)
        cluster.apply(doc)
        wait_status(cluster, namespace, "gitops", lambda s: s.get("status") == "active")
        before = cluster.get_json("webhook", "gitops", "-n", namespace)
        assert cluster.apply(doc).stdout.strip().endswith("unchanged")
        ssa = cluster.kubectl("apply", "--server-side", "--field-manager=argocd-like", "--force-conflicts", "-f", "-",
                              input=json.dumps(doc))  # fmt: skip
        assert "serverside-applied" in ssa.stdout
        after = cluster.get_json("webhook", "gitops", "-n", namespace, "--show-managed-fields")
        assert after["metadata"]["generation"] == before["metadata"]["generation"] == 1
        assert after["spec"] == before["spec"], "the operator must never write spec"
        assert not after["metadata"].get("finalizers"), "no finalizer: cleanup does not need one"
        annotations = after["metadata"].get("annotations", {})
        assert not [a for a in annotations if a.startswith("kopf.zalando.org")], annotations
        managers = {m["manager"]: m for m in after["metadata"]["managedFields"]}
        operator_fields = [m for name, m in managers.items() if name not in {"kubectl-client-side-apply",
                                                                             "argocd-like", "kubectl"}]  # fmt: skip
        for entry in operator_fields:
            owned = json.dumps(entry.get("fieldsV1", {}))
            assert '"f:spec"' not in owned, f"{entry['manager']} owns spec fields: {owned}"


def test_inline_secrets_are_accepted_with_a_warning(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with receiver() as recv:
        spec = base_spec()
        spec["webhookConfig"] = {"endpoint": recv.url("inline"), "secretKey": "inline-hmac-secret",
                                 "headers": {"Authorization": "Bearer inline-token-value"}}  # fmt: skip
        cluster.apply(manifest("inline", spec, namespace))
        status = wait_status(cluster, namespace, "inline", lambda s: s.get("status") == "active")
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True" and "secretKey is inline" in ready["message"]
        events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        assert "InlineSecret" in events and "webhookConfig.headers Authorization" in events
        everything = events + json.dumps(status) + operator.tail(400)
        assert "inline-hmac-secret" not in everything and "inline-token-value" not in everything
