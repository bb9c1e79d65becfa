"""The control plane is real: storage, CRD validation, RBAC with service-account tokens, namespace lifecycle."""

from __future__ import annotations

import json
import uuid

from controlplane import versions
from support.cluster import Cluster, wait_for


def test_server_reports_pinned_version(cluster: Cluster) -> None:
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["clientVersion"]["gitVersion"].startswith("v1.37")
    if cluster.local:
        assert out["serverVersion"]["gitVersion"] == versions.KUBERNETES_VERSION


def test_readyz_and_api_resources(cluster: Cluster) -> None:
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    resources = cluster.kubectl("api-resources", "-o", "name").stdout.split()
    assert {"namespaces", "secrets", "customresourcedefinitions.apiextensions.k8s.io"} <= set(resources)


def test_namespace_and_secret_round_trip(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "secret", "generic", "s1", "-n", namespace, "--from-literal=token=s3cr3t-value")
    secret = cluster.get_json("secret", "s1", "-n", namespace)
    assert secret["data"]["token"] == "czNjcjN0LXZhbHVl"  # base64("s3cr3t-value")
    # kube-controller-manager is running: the namespace gets its default ServiceAccount.
    wait_for(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
        30,
        "the default ServiceAccount",
    )


def test_crd_established_served_and_schema_enforced(cluster: Cluster, namespace: str) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.webhook-operator.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    cluster.apply(crd)
    try:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s")
        good = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "ok", "namespace": namespace},
            "spec": {"size": 3},
        }
        wait_for(lambda: cluster.apply(good, check=False).returncode == 0, 30, "the CRD to be served")
        assert cluster.get_json(f"widgets.{group}", "ok", "-n", namespace)["spec"]["size"] == 3
        bad = {**good, "metadata": {"name": "bad", "namespace": namespace}, "spec": {"size": 0}}
        result = cluster.apply(bad, check=False)
        assert result.returncode != 0
        assert "spec.size" in result.stderr and "should be greater than or equal to 1" in result.stderr
    finally:
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false")


def test_rbac_denies_service_account_until_bound(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    token = cluster.kubectl("create", "token", "reader", "-n", namespace, "--duration=10m").stdout.strip()

    def as_reader() -> tuple[int, str]:
        result = cluster.kubectl("get", "configmaps", "-n", namespace, f"--token={token}", check=False)
        return result.returncode, result.stderr

    code, err = as_reader()
    assert code != 0 and "forbidden" in err.lower(), err
    assert f"system:serviceaccount:{namespace}:reader" in err
    cluster.kubectl("create", "role", "cm-reader", "-n", namespace, "--verb=get,list", "--resource=configmaps")
    cluster.kubectl(
        "create",
        "rolebinding",
        "cm-reader",
        "-n",
        namespace,
        "--role=cm-reader",
        f"--serviceaccount={namespace}:reader",
    )
    wait_for(lambda: as_reader()[0] == 0, 30, "the RoleBinding to take effect")
    # Still nothing beyond what the Role grants.
    denied = cluster.kubectl("get", "secrets", "-n", namespace, f"--token={token}", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def test_deleted_namespace_really_disappears(cluster: Cluster) -> None:
    name = cluster.create_namespace("wo-delete")
    cluster.kubectl("create", "configmap", "c1", "-n", name, "--from-literal=a=b")
    cluster.delete_namespace(name, timeout=90)
    assert cluster.kubectl("get", "namespace", name, check=False).returncode != 0
