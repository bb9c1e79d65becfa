"""Packaging on a real API server: the Helm chart (lint, schema, template, install/upgrade/uninstall) and the
kustomize base and overlay (render, server-side dry-run).

helm is built from its Go module once (``controlplane.build.ensure_helm``) and cached. The control plane has no nodes,
so pods are created but never run: nothing here waits for readiness (no ``--wait``). Whether the chart's RBAC is
*sufficient* for the running operator is a separate test that needs the operator process (see docs/install.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster import Cluster, wait_for
from webhook_operator.config import OperatorConfig, add_arguments, from_sources

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "webhook-operator"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
POSTGRES_VALUES = CHART / "ci" / "postgres-values.yaml"
KUSTOMIZE_BASE = ROOT / "manifests" / "base"
KUSTOMIZE_OVERLAY = ROOT / "manifests" / "overlays" / "namespaced"
CRD_NAME = "webhooks.events.open-metadata.org"
SERVICEMONITOR_CRD = "servicemonitors.monitoring.coreos.com"
RBAC_KINDS = {"Role", "ClusterRole"}

Doc = dict[str, Any]


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path

    def run(
        self, *args: str, cluster: Cluster | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        command = [str(self.binary), *args]
        if cluster is not None:
            command.append(f"--kubeconfig={cluster.kubeconfig}")
            env["KUBECONFIG"] = str(cluster.kubeconfig)
        else:
            env.pop("KUBECONFIG", None)
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}\n{result.stdout}"
            )
        return result

    def template(self, *args: str) -> list[Doc]:
        out = self.run("template", "rel", str(CHART), "--namespace", "wo-system", *args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def default_docs(helm: Helm) -> list[Doc]:
    return helm.template()


@pytest.fixture(scope="module")
def full_docs(helm: Helm) -> list[Doc]:
    return helm.template("-f", str(FULL_VALUES))


def _kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def _one(docs: list[Doc], kind: str) -> Doc:
    found = _kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def _rules(docs: list[Doc]) -> list[tuple[Doc, dict[str, Any]]]:
    return [(doc, rule) for doc in docs if doc["kind"] in RBAC_KINDS for rule in doc.get("rules", [])]


def _grants(docs: list[Doc], kind: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples granted by the Roles or ClusterRoles in docs."""
    return {
        (group, resource, verb)
        for doc, rule in _rules(docs)
        if doc["kind"] == kind
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _triples(table: dict[tuple[str, str], tuple[str, ...]]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for (group, resource), verbs in table.items() for verb in verbs}


WATCH_GRANTS = _triples(
    {
        ("events.open-metadata.org", "webhooks"): ("get", "list", "watch", "patch"),
        ("events.open-metadata.org", "webhooks/status"): ("get", "patch"),
        ("", "events"): ("create", "patch"),
        ("events.k8s.io", "events"): ("create", "patch"),
    }
)
# Secrets: per watched namespace, or cluster-wide only when asked for (rbac.clusterWideSecrets; issue 13).
SECRET_GRANTS = _triples({("", "secrets"): ("get", "list", "watch")})
AUTH_GRANTS = _triples(
    {
        ("authentication.k8s.io", "tokenreviews"): ("create",),
        ("authorization.k8s.io", "subjectaccessreviews"): ("create",),
    }
)


# ---------------------------------------------------------------------------------------------------- helm lint


@pytest.mark.parametrize(
    "values", [None, FULL_VALUES, POSTGRES_VALUES], ids=["default-values", "full-values", "postgres-values"]
)
def test_helm_lint_is_clean(helm: Helm, values: Path | None) -> None:
    args = ["lint", str(CHART), "--strict"] + (["-f", str(values)] if values else [])
    result = helm.run(*args)
    assert "0 chart(s) failed" in result.stdout, result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("flag", "complaint"),
    [
        ("replicaCount=abc", "got string, want integer"),
        ("replicaCount=2", "maximum"),
        ("notAValue=1", "additional properties 'notAValue' not allowed"),
        ("image.tagg=1.0", "additional properties 'tagg' not allowed"),
        ("config.logFormat=xml", "value must be one of"),
        ("persistence.enabled=maybe", "want boolean"),
        ("watchNamespaces[0]=Not_A_Namespace", "does not match pattern"),
        ("config.ssrf.denyCidrs[0]=everything", "does not match pattern"),
        ("config.ssrf.allowPrivate=maybe", "want boolean"),
        ("rbac.clusterWideSecrets=maybe", "want boolean"),
        # Issue 15: one replica with SQLite (several on PostgreSQL: test_chart_replicas.py); a DSN only from a
        # Secret, which PostgreSQL needs.
        ("replicas=2", "additional properties 'replicas' not allowed"),
        ("store.type=postgres,store.postgres.existingSecret=pg-app,replicaCount=-1", "minimum"),
        ("store.type=bogus", "value must be one of"),
        ("store.type=postgres", "existingSecret"),
        ("store.postgres.existingSecretKey=", "minLength"),
        ("store.postgres.dsn=postgresql://u:p@db/wo", "additional properties 'dsn' not allowed"),
    ],
)
def test_values_schema_rejects_bad_values(helm: Helm, flag: str, complaint: str) -> None:
    result = helm.run("lint", str(CHART), "--set", flag, check=False)
    assert result.returncode != 0, result.stdout
    assert complaint in result.stdout + result.stderr, result.stdout + result.stderr
    # The same schema guards install/upgrade/template, not only lint.
    template = helm.run("template", "rel", str(CHART), "--set", flag, check=False)
    assert template.returncode != 0


# ------------------------------------------------------------------------------------------------ helm template


@pytest.mark.parametrize("values", ["default_docs", "full_docs"])
def test_no_rbac_wildcards(values: str, request: pytest.FixtureRequest) -> None:
    docs: list[Doc] = request.getfixturevalue(values)
    rules = _rules(docs)
    assert rules
    for doc, rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in rule.get(field, []), f"{doc['kind']}/{doc['metadata']['name']}: {field} has '*'"
            assert not any("*" in item for item in rule.get(field, [])), rule


def test_all_namespaces_rbac_is_exactly_what_the_operator_uses(default_docs: list[Doc]) -> None:
    assert not _kind(default_docs, "Role") and not _kind(default_docs, "RoleBinding")
    assert _grants(default_docs, "ClusterRole") == WATCH_GRANTS | AUTH_GRANTS, "no Secrets unless asked for"
    binding = _one(default_docs, "ClusterRoleBinding")
    role = _one(default_docs, "ClusterRole")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    sa = _one(default_docs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "wo-system"}]


def test_cluster_wide_secrets_only_when_asked_for(default_docs: list[Doc], helm: Helm) -> None:
    """Issue 13: the default install grants no Secret access and tells the operator so; rbac.clusterWideSecrets
    grants get/list/watch on Secrets in every namespace (RBAC cannot limit it to labelled ones)."""
    assert _parse_args(_container(default_docs)).read_secrets is False
    for _doc, rule in _rules(default_docs):
        assert "secrets" not in rule["resources"]
    opted = helm.template("--set", "rbac.clusterWideSecrets=true")
    assert _grants(opted, "ClusterRole") == WATCH_GRANTS | SECRET_GRANTS | AUTH_GRANTS
    assert _parse_args(_container(opted)).read_secrets is True
    # With watchNamespaces the value changes nothing: Secrets per namespace, never cluster-wide.
    namespaced = helm.template("-f", str(FULL_VALUES), "--set", "rbac.clusterWideSecrets=true")
    assert _grants(namespaced, "ClusterRole") == AUTH_GRANTS
    assert _parse_args(_container(namespaced)).read_secrets is True


def test_watch_namespaces_use_roles_and_no_cluster_wide_secrets(full_docs: list[Doc]) -> None:
    watched = yaml.safe_load(FULL_VALUES.read_text())["watchNamespaces"]
    roles = _kind(full_docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(watched)
    for role in roles:
        assert _grants([role], "Role") == WATCH_GRANTS | SECRET_GRANTS
    bindings = _kind(full_docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(watched)
    # Cluster scope: only the reviews of the operations API; no Secrets, no Webhooks, no Events.
    assert _grants(full_docs, "ClusterRole") == AUTH_GRANTS
    for _doc, rule in _rules(_kind(full_docs, "ClusterRole")):
        assert "secrets" not in rule["resources"]


def test_token_auth_needs_no_cluster_role_in_namespaced_mode(helm: Helm) -> None:
    docs = helm.template("-f", str(FULL_VALUES), "--set", "config.apiAuth=tokens")
    assert not _kind(docs, "ClusterRole") and not _kind(docs, "ClusterRoleBinding")


def _container(docs: list[Doc]) -> dict[str, Any]:
    containers = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _pod(docs: list[Doc]) -> Doc:
    """The operator Deployment's pod spec."""
    spec: Doc = _one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("values", ["default_docs", "full_docs"])
def test_deployment_is_hardened_single_replica(values: str, request: pytest.FixtureRequest) -> None:
    docs: list[Doc] = request.getfixturevalue(values)
    deployment = _one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(docs)
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["image"] == "ghcr.io/webhook-operator/webhook-operator:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][0] == "run"
    assert {"requests", "limits"} <= container["resources"].keys()
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {(p["name"], p["containerPort"]) for p in container["ports"]} == {("http", 8080), ("metrics", 8081)}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/var/lib/webhook-operator"] == "store" and mounts["/tmp"] == "tmp"
    # Issue 13, finding 10: non-root with a read-only root filesystem, so every path the operator writes (the store
    # and its -wal/-shm files, TMPDIR) must be a writable volume; the Secrets it reads are read-only mounts.
    store_dir = str(_parse_args(container).store_path.parent)
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly", False)}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert {store_dir, env["TMPDIR"]} <= writable
    assert writable == {store_dir, env["TMPDIR"]}, f"unexpected writable mounts: {writable}"
    assert pod["securityContext"]["runAsUser"] != 0 and sc["runAsUser"] != 0
    assert sc.get("privileged", False) is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]
    for label in ("name", "instance", "version", "managed-by", "component", "part-of"):
        assert f"app.kubernetes.io/{label}" in deployment["metadata"]["labels"]

    service = _one(docs, "Service")
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("http", 8080, "http"),
        ("metrics", 8081, "metrics"),
    }
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_store_is_a_pvc_by_default(default_docs: list[Doc]) -> None:
    pvc = _one(default_docs, "PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in pvc["spec"]
    volumes = {v["name"]: v for v in _one(default_docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["store"]["persistentVolumeClaim"] == {"claimName": pvc["metadata"]["name"]}


def test_store_is_an_empty_dir_without_persistence(full_docs: list[Doc]) -> None:
    # (The NOTES warning that queued events die with the pod is checked on a real install below.)
    assert not _kind(full_docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in _one(full_docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["store"] == {"name": "store", "emptyDir": {}}


def test_storage_class_and_keep_policy(helm: Helm) -> None:
    docs = helm.template("--set", "persistence.storageClass=fast", "--set", "persistence.keepOnUninstall=true")
    pvc = _one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "fast"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def _parse_args(container: dict[str, Any]) -> OperatorConfig:
    """The rendered arguments and the rendered WEBHOOK_OPERATOR_* variables, parsed as the operator parses them."""
    parser = argparse.ArgumentParser(prog="webhook-operator run")
    add_arguments(parser)
    assert container["args"][0] == "run"
    # A variable from a Secret (valueFrom.secretKeyRef, e.g. the PostgreSQL DSN) stands in as a placeholder: the
    # parser checks that it is set, the chart must never render its value.
    environ = {
        e["name"]: e.get("value", "<from a Secret>")
        for e in container.get("env", [])
        if e["name"].startswith("WEBHOOK_OPERATOR_")
    }
    return from_sources(parser.parse_args(container["args"][1:]), environ=environ)


def test_rendered_arguments_are_accepted_by_the_operator(default_docs: list[Doc], full_docs: list[Doc]) -> None:
    default = _parse_args(_container(default_docs))
    assert default.namespaces == ()
    assert default.store_path == Path("/var/lib/webhook-operator/store.db")
    # No token in the values: the operator still reads the (optional) <release>-intake Secret's file, so the intake
    # is closed until an admin creates it, never open by accident.
    assert default.intake_token_file == Path("/etc/webhook-operator/intake/tokens")
    assert default.log_format == "json"

    full = _parse_args(_container(full_docs))
    assert full.namespaces == ("team-a", "team-b")
    assert full.retry.schedule == (30.0, 120.0, 600.0)
    assert full.status_interval == 5.0
    assert full.retention == 3 * 86400.0
    assert full.store_sync == "NORMAL"
    assert full.max_concurrency == 32
    assert full.ssrf_allow_cidr == ("10.20.0.0/16",)
    assert full.ssrf_deny_cidr == ("169.254.169.254/32",)
    assert default.ssrf_allow_private is False and full.ssrf_allow_private is False
    assert full.admins == ("admin@example.com",)
    assert full.ui_base_url == "https://openmetadata.example.com"
    assert (full.log_format, full.log_level) == ("text", "DEBUG")
    assert full.intake_max_body == 4 * 1024 * 1024
    assert full.intake_token_file == Path("/etc/webhook-operator/intake/tokens")


def test_ssrf_allow_private_is_off_by_default_and_maps_to_its_variable(default_docs: list[Doc], helm: Helm) -> None:
    """Issue 13, finding 6: private ranges (the cluster's Services and pods) are closed unless the admin opens them."""
    env = {e["name"]: e.get("value") for e in _container(default_docs)["env"]}
    assert env["WEBHOOK_OPERATOR_SSRF_ALLOW_PRIVATE"] == "false"
    opened = _container(helm.template("--set", "config.ssrf.allowPrivate=true"))
    assert {e["name"]: e.get("value") for e in opened["env"]}["WEBHOOK_OPERATOR_SSRF_ALLOW_PRIVATE"] == "true"
    assert _parse_args(opened).ssrf_allow_private is True
    service_cidr = _parse_args(_container(helm.template("--set", "config.ssrf.allowCidrs[0]=10.96.0.0/12")))
    assert (service_cidr.ssrf_allow_cidr, service_cidr.ssrf_allow_private) == (("10.96.0.0/12",), False)


def test_intake_token_is_a_mounted_secret_file(full_docs: list[Doc], helm: Helm) -> None:
    secret = _one(full_docs, "Secret")
    assert list(secret["data"]) == ["token"]
    container = _container(full_docs)
    assert not any("not-a-real-token" in arg for arg in container["args"]), "the token must not be an argument"
    pod = _one(full_docs, "Deployment")["spec"]["template"]["spec"]
    volume = {v["name"]: v for v in pod["volumes"]}["intake-token"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert volume["secret"]["items"] == [{"key": "token", "path": "tokens"}]
    mount = {m["name"]: m for m in container["volumeMounts"]}["intake-token"]
    assert mount == {"name": "intake-token", "mountPath": "/etc/webhook-operator/intake", "readOnly": True}
    assert "subPath" not in mount  # a subPath mount would never see a rotated Secret

    existing = helm.template("--set", "intake.existingSecret=my-tokens", "--set", "intake.existingSecretKey=tokens")
    assert not _kind(existing, "Secret")
    volume = {v["name"]: v for v in _one(existing, "Deployment")["spec"]["template"]["spec"]["volumes"]}["intake-token"]
    assert volume["secret"]["secretName"] == "my-tokens"
    assert volume["secret"]["items"] == [{"key": "tokens", "path": "tokens"}]


def test_optional_objects_only_when_enabled(default_docs: list[Doc], full_docs: list[Doc]) -> None:
    for kind in ("NetworkPolicy", "ServiceMonitor", "ConfigMap", "Secret"):
        assert not _kind(default_docs, kind), kind

    policy = _one(full_docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"], "egress stays open unless networkPolicy.egress is set"
    intake, metrics = policy["ingress"]
    assert intake["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert intake["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "openmetadata"}
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]

    monitor = _one(full_docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == _one(full_docs, "Service")["spec"]["selector"]

    dashboard = _one(full_docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "webhook-operator.json").read_text())
    assert json.loads(dashboard["data"]["webhook-operator.json"]) == shipped


def test_egress_rules_restrict_egress(helm: Helm) -> None:
    docs = helm.template(
        "--set", "networkPolicy.enabled=true", "--set-json", 'networkPolicy.egress=[{"ports":[{"port":443}]}]'
    )
    policy = _one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["egress"] == [{"ports": [{"port": 443}]}]


def test_crd_ships_in_the_crds_directory(helm: Helm) -> None:
    crds = [d for d in yaml.safe_load_all(helm.run("show", "crds", str(CHART)).stdout) if d]
    assert [c["metadata"]["name"] for c in crds] == [CRD_NAME]
    templates = helm.template()
    assert not _kind(templates, "CustomResourceDefinition"), "the CRD belongs in crds/, not templates/"


# ---------------------------------------------------------------------------------- helm against the control plane


def _release(namespace: str) -> str:
    return f"wo-{namespace.rsplit('-', 1)[-1]}"


def _manifest(helm: Helm, cluster: Cluster, release: str, namespace: str) -> str:
    return helm.run("get", "manifest", release, "-n", namespace, cluster=cluster).stdout


def _existing(cluster: Cluster, manifest: str) -> list[str]:
    """kind/name of every object of the manifest that exists in the cluster."""
    result = cluster.kubectl("get", "-f", "-", "--ignore-not-found", "-o", "name", input=manifest)
    return sorted(line for line in result.stdout.splitlines() if line)


def _expected(manifest: str) -> list[str]:
    names = []
    for doc in yaml.safe_load_all(manifest):
        if doc:
            group = doc["apiVersion"].rsplit("/", 1)[0] if "/" in doc["apiVersion"] else ""
            kind = doc["kind"].lower() + (f".{group}" if group else "")
            names.append(f"{kind}/{doc['metadata']['name']}")
    return sorted(names)


def _label_restricted(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
        "--overwrite",
    )


def _pods(cluster: Cluster, namespace: str, release: str) -> list[Doc]:
    items: list[Doc] = cluster.get_json("pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}")["items"]
    return items


def test_helm_install_upgrade_uninstall(cluster: Cluster, namespace: str, helm: Helm) -> None:
    release = _release(namespace)
    _label_restricted(cluster, namespace)
    installed = helm.run("install", release, str(CHART), "-n", namespace, cluster=cluster)
    assert "STATUS: deployed" in installed.stdout
    manifest = _manifest(helm, cluster, release, namespace)
    expected = _expected(manifest)
    kinds = {name.split("/")[0] for name in expected}
    assert kinds == {
        "serviceaccount",
        "persistentvolumeclaim",
        "clusterrole.rbac.authorization.k8s.io",
        "clusterrolebinding.rbac.authorization.k8s.io",
        "service",
        "deployment.apps",
    }
    assert _existing(cluster, manifest) == expected
    assert cluster.kubectl("get", "crd", CRD_NAME, check=False).returncode == 0, "helm installs crds/ first"
    # The restricted Pod Security Standard admits the pod (created by the ReplicaSet; with no nodes it stays Pending).
    wait_for(lambda: len(_pods(cluster, namespace, release)) == 1, 60, "the operator pod to be created")

    upgraded = helm.run(
        "upgrade", release, str(CHART), "-n", namespace, "--set", "config.logLevel=DEBUG", cluster=cluster
    )
    assert "REVISION: 2" in upgraded.stdout
    deployment = cluster.get_json("deployment", f"{release}-webhook-operator", "-n", namespace)
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--log-level=DEBUG" in args and "--log-level=INFO" not in args
    history = json.loads(helm.run("history", release, "-n", namespace, "-o", "json", cluster=cluster).stdout)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]

    helm.run("uninstall", release, "-n", namespace, cluster=cluster)
    wait_for(lambda: _existing(cluster, manifest) == [], 60, "the release's objects to be deleted")
    # Helm never deletes what it installed from crds/: Webhooks (and their delivery state) survive an uninstall.
    assert cluster.kubectl("get", "crd", CRD_NAME, check=False).returncode == 0


MINIMAL_SERVICEMONITOR_CRD: Doc = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": SERVICEMONITOR_CRD, "labels": {"webhook-operator.test": "true"}},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "kind": "ServiceMonitor",
            "listKind": "ServiceMonitorList",
            "plural": "servicemonitors",
            "singular": "servicemonitor",
        },
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
                                "required": ["selector", "endpoints"],
                                "properties": {
                                    "selector": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "namespaceSelector": {
                                        "type": "object",
                                        "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                                    },
                                    "endpoints": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "port": {"type": "string"},
                                                "path": {"type": "string"},
                                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                                "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                            },
                                        },
                                    },
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def servicemonitor_crd(cluster: Cluster) -> Iterator[None]:
    """prometheus-operator's CRD when the cluster has it; otherwise a minimal stand-in, removed afterwards."""
    if cluster.kubectl("get", "crd", SERVICEMONITOR_CRD, check=False).returncode == 0:
        yield
        return
    cluster.apply(MINIMAL_SERVICEMONITOR_CRD)
    try:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{SERVICEMONITOR_CRD}", "--timeout=60s")
        wait_for(
            lambda: "servicemonitors" in cluster.kubectl("api-resources", "--api-group=monitoring.coreos.com").stdout,
            30,
            "servicemonitors to be served",
        )
        yield
    finally:
        cluster.kubectl("delete", "crd", SERVICEMONITOR_CRD, "--ignore-not-found", "--wait=false")


@pytest.fixture
def watched_namespaces(cluster: Cluster) -> Iterator[list[str]]:
    names = [cluster.create_namespace("wo-watched"), cluster.create_namespace("wo-watched")]
    yield names
    for name in names:
        cluster.delete_namespace(name)


def test_helm_install_namespaced_with_every_option(
    cluster: Cluster, namespace: str, helm: Helm, watched_namespaces: list[str], servicemonitor_crd: None
) -> None:
    release = _release(namespace)
    _label_restricted(cluster, namespace)
    installed = helm.run(
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "-f",
        str(FULL_VALUES),
        "--set-json",
        f"watchNamespaces={json.dumps(watched_namespaces)}",
        cluster=cluster,
    )
    assert "LOST" in installed.stdout, "NOTES must warn that queued events are lost without persistence"
    manifest = _manifest(helm, cluster, release, namespace)
    expected = _expected(manifest)
    assert _existing(cluster, manifest) == expected
    assert {name.split("/")[0] for name in expected} >= {
        "networkpolicy.networking.k8s.io",
        "servicemonitor.monitoring.coreos.com",
        "configmap",
        "secret",
        "role.rbac.authorization.k8s.io",
        "rolebinding.rbac.authorization.k8s.io",
    }
    for watched in watched_namespaces:
        role = cluster.get_json("role", f"{release}-webhook-operator", "-n", watched)
        assert _grants([role], "Role") == WATCH_GRANTS | SECRET_GRANTS  # Secrets per watched namespace (issue 13)
    wait_for(lambda: len(_pods(cluster, namespace, release)) == 1, 60, "the operator pod to be created")

    helm.run("uninstall", release, "-n", namespace, cluster=cluster)
    wait_for(lambda: _existing(cluster, manifest) == [], 60, "the release's objects to be deleted")


def test_rendered_pod_meets_the_restricted_pod_security_standard(cluster: Cluster, namespace: str, helm: Helm) -> None:
    _label_restricted(cluster, namespace)
    for args in ([], ["-f", str(FULL_VALUES)], ["-f", str(POSTGRES_VALUES)]):
        docs = helm.template(*args)
        deployment = _one(docs, "Deployment")
        deployment["metadata"]["namespace"] = namespace
        result = cluster.kubectl(
            "apply", "--server-side", "--dry-run=server", "-f", "-", input=yaml.safe_dump(deployment)
        )
        assert "PodSecurity" not in result.stderr, result.stderr
    # Control: the same check does flag a pod that breaks the standard, so the silence above means something.
    _container([deployment])["securityContext"]["allowPrivilegeEscalation"] = True
    flagged = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=yaml.safe_dump(deployment))
    assert 'would violate PodSecurity "restricted' in flagged.stderr, flagged.stderr


# ------------------------------------------------------------------------------------------------------ kustomize


def _kustomize(cluster: Cluster, directory: Path) -> list[Doc]:
    out = cluster.kubectl("kustomize", str(directory)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _into_namespace(docs: list[Doc], namespace: str) -> list[Doc]:
    """The rendered objects with every namespace (the operator's and the watched one) replaced by a test namespace,
    so the server can check them without touching `webhook-operator` or `openmetadata` of a real cluster."""
    moved: list[Doc] = copy.deepcopy(docs)
    for doc in moved:
        if doc["kind"] == "Namespace":
            doc["metadata"]["name"] = namespace
        if "namespace" in doc["metadata"]:
            doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
    return moved


@pytest.mark.parametrize("directory", [KUSTOMIZE_BASE, KUSTOMIZE_OVERLAY], ids=["base", "overlay-namespaced"])
def test_kustomize_renders_and_the_server_accepts_every_object(
    cluster: Cluster, namespace: str, directory: Path
) -> None:
    docs = _kustomize(cluster, directory)
    kinds = sorted(doc["kind"] for doc in docs)
    common = [
        "CustomResourceDefinition",
        "Deployment",
        "Namespace",
        "PersistentVolumeClaim",
        "Service",
        "ServiceAccount",
    ]
    if directory == KUSTOMIZE_BASE:
        assert kinds == sorted([*common, "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding"])
        assert _grants(docs, "ClusterRole") == WATCH_GRANTS | AUTH_GRANTS, "no cluster-wide Secrets in the base"
        assert _parse_args(_container(docs)).read_secrets is False
    else:
        assert kinds == sorted([*common, "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"])
        assert _grants(docs, "ClusterRole") == AUTH_GRANTS, "no cluster-wide Secrets/Webhooks in the overlay"
        assert _grants(docs, "Role") == WATCH_GRANTS | SECRET_GRANTS
        assert _parse_args(_container(docs)).read_secrets is True
        role = _one(docs, "Role")
        assert role["metadata"]["namespace"] == "openmetadata"
        assert "--namespaces=openmetadata" in _container(docs)["args"]
    for doc in docs:
        if doc["kind"] not in {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}:
            assert doc["metadata"].get("namespace") in {"webhook-operator", "openmetadata"}, doc["metadata"]
    for _doc, rule in _rules(docs):
        assert not any("*" in item for field in ("apiGroups", "resources", "verbs") for item in rule[field]), rule
    crd = _one(docs, "CustomResourceDefinition")
    assert crd["spec"] == yaml.safe_load((ROOT / "crds" / "webhooks.yaml").read_text())["spec"]
    deployment = _one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    sc = _container(docs)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert _parse_args(_container(docs)).ssrf_allow_private is False

    _label_restricted(cluster, namespace)
    moved = _into_namespace(docs, namespace)
    result = cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        "-",
        input="---\n".join(yaml.safe_dump(doc) for doc in moved),
    )
    applied = [line for line in result.stdout.splitlines() if line.endswith("serverside-applied (server dry run)")]
    assert len(applied) == len(docs), result.stdout + result.stderr
    assert "PodSecurity" not in result.stderr, result.stderr
