"""Least privilege proven by running under it: the operator runs with a token of the Helm chart's own
ServiceAccount (RBAC and Secret mode rendered from the chart), and the full flow passes: reconcile a Webhook, read
its (opted-in) Secret, deliver, patch status, post Events — cluster-wide with and without rbac.clusterWideSecrets,
and with watchNamespaces. The default cluster-wide install has no Secret access at all: a Secret reference is a
configuration error that says how to grant it, and nothing logs "forbidden"."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster import Cluster, wait_for
from support.events import raw
from support.operator import OperatorProcess, receiver, wait_status
from support.webhooks import ROOT, base_spec, manifest, webhook_secret

CHART = ROOT / "charts" / "webhook-operator"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def _render(release: str, operator_ns: str, watch: list[str], *values: str) -> list[dict[str, Any]]:
    from controlplane.build import ensure_helm

    args = [str(ensure_helm()), "template", release, str(CHART), "--namespace", operator_ns]
    for i, ns in enumerate(watch):
        args += ["--set", f"watchNamespaces[{i}]={ns}"]
    for value in values:
        args += ["--set", value]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _render_rbac(release: str, operator_ns: str, watch: list[str], *values: str) -> list[dict[str, Any]]:
    return [d for d in _render(release, operator_ns, watch, *values) if d["kind"] in RBAC_KINDS]


def _read_secrets(docs: list[dict[str, Any]]) -> str:
    """The chart's --read-secrets for the operator process (the chart decides it together with the RBAC)."""
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return "false" if "--read-secrets=false" in args else "true"


def _token_kubeconfig(cluster: Cluster, operator_ns: str, account: str, path: Path) -> Path:
    token = cluster.kubectl("create", "token", account, "-n", operator_ns, "--duration=1h").stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "operator-sa", "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = "operator-sa"
    path.write_text(yaml.safe_dump(config))
    return path


def _signed(body: bytes, signature: str, key: str) -> bool:
    expected = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


@pytest.mark.parametrize("mode", ["cluster-wide", "cluster-wide-secrets", "watch-namespaces"])
def test_operator_works_with_exactly_the_charts_rbac(
    cluster: Cluster, crd: None, namespace: str, tmp_path: Path, mode: str
) -> None:
    operator_ns = cluster.create_namespace("wo-op")
    release = f"rbac-{mode[-7:]}-{namespace[-8:]}"
    values = ["rbac.clusterWideSecrets=true"] if mode == "cluster-wide-secrets" else []
    watch = [namespace] if mode == "watch-namespaces" else []
    secrets_granted = mode != "cluster-wide"
    try:
        rendered = _render(release, operator_ns, watch, *values)
        assert _read_secrets(rendered) == str(secrets_granted).lower()
        docs = [d for d in rendered if d["kind"] in RBAC_KINDS]
        for doc in docs:
            if doc["kind"] in {"ServiceAccount", "Role", "RoleBinding"}:
                cluster.apply(doc, "-n", doc["metadata"].get("namespace") or operator_ns)
            else:
                cluster.apply(doc)
        account = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
        kubeconfig = _token_kubeconfig(cluster, operator_ns, account, tmp_path / "sa-kubeconfig")
        # Sanity: the identity really is restricted.
        denied = cluster.kubectl(f"--kubeconfig={kubeconfig}", "get", "pods", "-n", namespace, check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
        if mode != "cluster-wide-secrets":
            elsewhere = cluster.kubectl(f"--kubeconfig={kubeconfig}", "get", "secrets", "-n", operator_ns, check=False)
            assert elsewhere.returncode != 0, "no Secret access outside the watched namespaces"
        if mode == "cluster-wide":
            anywhere = cluster.kubectl(f"--kubeconfig={kubeconfig}", "get", "secrets", "-A", check=False)
            assert anywhere.returncode != 0, "the default install has no cluster-wide Secret access"

        restricted = Cluster(kubeconfig, cluster.kubectl_bin, local=cluster.local)
        operator = OperatorProcess(restricted, tmp_path, watch, read_secrets=_read_secrets(rendered)).start()
        try:
            with receiver(status_by_path={"/failing": 503}) as recv:
                cluster.apply(webhook_secret("hmac", namespace, key="k3y-value"))
                spec = base_spec()
                spec["batchSize"] = 1
                spec["webhookConfig"] = {"endpoint": recv.url("rbac"), "secretKeyRef": {"name": "hmac", "key": "key"}}
                cluster.apply(manifest("rbac", spec, namespace))
                if not secrets_granted:
                    failed = wait_status(cluster, namespace, "rbac", lambda s: s.get("status") == "failed")
                    assert "rbac.clusterWideSecrets" in json.dumps(failed) and "k3y-value" not in json.dumps(failed)
                    spec["webhookConfig"].pop("secretKeyRef")  # carry on without a Secret
                    cluster.apply(manifest("rbac", spec, namespace))
                generation = 1 if secrets_granted else 2

                def active(status: dict[str, Any]) -> bool:
                    return status.get("status") == "active" and status.get("observedGeneration") == generation

                wait_status(cluster, namespace, "rbac", active)
                event = raw(1)
                assert operator.post([event])[0] == 202
                wait_for(lambda: len(recv.by_path("rbac")) == 1, 30, "delivery under the chart's RBAC")
                got = recv.by_path("rbac")[0]
                if secrets_granted:
                    assert _signed(got.body, got.headers["X-OpenMetadata-Signature"], "k3y-value")
                else:
                    assert "X-OpenMetadata-Signature" not in got.headers
                wait_status(cluster, namespace, "rbac", lambda s: s.get("counts", {}).get("delivered") == 1)
                # Events need create/patch on events: make one happen (an endpoint that fails).
                spec["webhookConfig"]["endpoint"] = recv.url("failing")
                cluster.apply(manifest("rbac", spec, namespace))
                wait_status(cluster, namespace, "rbac", lambda s: s.get("observedGeneration") == generation + 1)
                event2 = dict(event, id="11111111-2222-3333-4444-555555555555")
                assert operator.post([event2])[0] == 202
                wait_for(lambda: "DeliveryFailing" in cluster.kubectl(
                    "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=rbac").stdout,
                    30, "a DeliveryFailing Event posted with the chart's RBAC")  # fmt: skip
        finally:
            assert operator.stop() == 0
        log = operator.tail(400)
        assert "forbidden" not in log.lower() and "Not enough permissions" not in log, log
    finally:
        for doc in _render_rbac(release, operator_ns, [], *values):
            if doc["kind"].startswith("Cluster"):
                cluster.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found")
        cluster.kubectl("delete", "namespace", operator_ns, "--wait=false")
