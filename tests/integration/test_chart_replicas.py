"""The chart with several replicas (issue 15, item 4): more than one replica only with ``store.type: postgres``
(values.schema.json), a PodDisruptionBudget and preferred anti-affinity by node when there is more than one, each pod
passing its name as ``--replica-id`` and its IP as ``POD_IP`` (the operator advertises ``POD_IP`` and the intake
port to the other replicas), a rolling update on PostgreSQL and
Recreate on SQLite — and the single-replica SQLite install rendered exactly as before. Rendered with the real helm,
the arguments parsed by the operator's own parser, the objects accepted by a real API server (server-side dry run,
restricted Pod Security Standard)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from integration.test_packaging import (
    CHART,
    FULL_VALUES,
    POSTGRES_VALUES,
    Doc,
    Helm,
    _container,
    _kind,
    _label_restricted,
    _one,
    _parse_args,
    _pod,
)
from support.cluster import Cluster

PG = ("-f", str(POSTGRES_VALUES))
THREE = (*PG, "--set", "replicaCount=3")


def _selector(docs: list[Doc]) -> dict[str, str]:
    labels: dict[str, str] = _one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    return labels


def _env(container: dict[str, Any]) -> dict[str, Doc]:
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (("--set", "replicaCount=2"), "maximum: got 2, want 1"),
        (("--set", "store.type=sqlite,replicaCount=3"), "maximum: got 3, want 1"),
        ((*PG, "--set", "replicaCount=-1"), "minimum"),
        ((*THREE, "--set", "podAntiAffinity.type=soft"), "value must be one of"),
        ((*THREE, "--set", "podAntiAffinity.weight=101"), "maximum"),
        ((*THREE, "--set", "podDisruptionBudget.maxUnavailable=0"), "oneOf"),
        ((*THREE, "--set", "podDisruptionBudget.maxUnavailable=150%"), "oneOf"),
        ((*THREE, "--set", "podDisruptionBudget.minAvailable=1"), "additional properties 'minAvailable'"),
    ],
)
def test_schema_allows_several_replicas_only_on_postgres(helm: Helm, flags: tuple[str, ...], complaint: str) -> None:
    result = helm.run("lint", str(CHART), *flags, check=False)
    assert result.returncode != 0 and complaint in result.stdout + result.stderr, result.stdout + result.stderr
    assert helm.run("template", "rel", str(CHART), *flags, check=False).returncode != 0


@pytest.mark.parametrize("replicas", ["0", "1", "2", "7"])
def test_postgres_takes_any_replica_count_and_lints_clean(helm: Helm, replicas: str) -> None:
    result = helm.run("lint", str(CHART), "--strict", *PG, "--set", f"replicaCount={replicas}")
    assert "0 chart(s) failed" in result.stdout and "[WARNING]" not in result.stdout, result.stdout
    assert _one(helm.template(*PG, "--set", f"replicaCount={replicas}"), "Deployment")["spec"]["replicas"] == int(
        replicas
    )
    assert helm.run("lint", str(CHART), "--strict", "--set", "replicaCount=0").returncode == 0, "SQLite scaled down"


def test_three_postgres_replicas_get_a_budget_anti_affinity_and_a_rolling_update(helm: Helm) -> None:
    docs = helm.template(*THREE)
    deployment = _one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}  # fmt: skip
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": _selector(docs)}}
    assert pdb["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    anti = _pod(docs)["affinity"]["podAntiAffinity"]
    assert anti == {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": _selector(docs)}},
    }]}  # fmt: skip


def test_each_pod_names_itself_as_the_replica_and_advertises_its_ip(helm: Helm) -> None:
    container = _container(helm.template(*THREE))
    assert "--replica-id=$(POD_NAME)" in container["args"]
    # No --advertise-address: the operator takes POD_IP and its intake port itself, bracketing an IPv6 address,
    # which "$(POD_IP):8080" in an argument would get wrong.
    assert not any(arg.startswith("--advertise-address") for arg in container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == 8080, "the advertised port is the intake's (operations API)"
    env = _env(container)
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    names = list(env)
    assert names.index("POD_NAME") < names.index("POD_IP") < len(names), "$(VAR) expands only earlier variables"
    # The operator's own parser takes the flags (Kubernetes substitutes $(POD_NAME) and $(POD_IP) before it runs).
    config = _parse_args(container)
    assert config.store == "postgres"
    assert config.replica_id == "$(POD_NAME)"
    assert config.advertise_address == "", "derived from POD_IP at start-up"
    assert config.intake_address[1] == 8080
    # What the operator makes of the pod's environment once Kubernetes has filled it in.
    from webhook_operator.sharing.setup import advertise_address, replica_id

    pod_env = {"POD_NAME": "rel-webhook-operator-7d9f-abcde", "POD_IP": "10.1.2.3"}
    assert replica_id("rel-webhook-operator-7d9f-abcde", pod_env) == pod_env["POD_NAME"]
    assert advertise_address(config.advertise_address, 8080, pod_env) == "10.1.2.3:8080"
    assert advertise_address(config.advertise_address, 8080, {"POD_IP": "fd00::7"}) == "[fd00::7]:8080"


@pytest.mark.parametrize(
    ("flags", "check"),
    [
        (("--set", "podDisruptionBudget.maxUnavailable=2"),
         lambda d: _one(d, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 2),
        (("--set", "podDisruptionBudget.maxUnavailable=50%"),
         lambda d: _one(d, "PodDisruptionBudget")["spec"]["maxUnavailable"] == "50%"),
        (("--set", "podDisruptionBudget.enabled=false"), lambda d: not _kind(d, "PodDisruptionBudget")),
        (("--set", "podAntiAffinity.type=none"), lambda d: "affinity" not in _pod(d)),
        (("--set", "podAntiAffinity.type=required,podAntiAffinity.topologyKey=topology.kubernetes.io/zone"),
         lambda d: _pod(d)["affinity"]["podAntiAffinity"] == {"requiredDuringSchedulingIgnoredDuringExecution": [
             {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": _selector(d)}}]}),
        (("--set", "podAntiAffinity.weight=10"),
         lambda d: _pod(d)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0][
             "weight"] == 10),
        (("--set-json", 'affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{'
                        '"nodeSelectorTerms":[{"matchExpressions":[{"key":"pool","operator":"In","values":["ops"]}]}]}}}'),
         lambda d: list(_pod(d)["affinity"]) == ["nodeAffinity"]),
    ],
    ids=["budget-2", "budget-percent", "budget-off", "anti-affinity-off", "anti-affinity-required-zone",
         "anti-affinity-weight", "own-affinity-replaces-it"],
)  # fmt: skip
def test_budget_and_anti_affinity_are_configurable(helm: Helm, flags: tuple[str, ...], check: Any) -> None:
    assert check(helm.template(*THREE, *flags))


def test_one_replica_has_no_budget_and_no_anti_affinity(helm: Helm) -> None:
    for args in ((), PG, ("-f", str(FULL_VALUES))):
        docs = helm.template(*args)
        assert not _kind(docs, "PodDisruptionBudget"), args
        assert "affinity" not in _pod(docs), args
    # A budget of one replica with maxUnavailable 1 would protect nothing; 0 would block every node drain.


def test_single_replica_sqlite_renders_exactly_as_before(helm: Helm) -> None:
    """The default install: one replica, Recreate, the store on its claim, no replica identity, no budget, no
    affinity. The replica-related values, set to anything, change nothing while replicaCount is 1 and the store
    SQLite: the render is byte for byte the default one."""
    default = helm.run("template", "rel", str(CHART), "--namespace", "wo-system").stdout
    docs = [doc for doc in yaml.safe_load_all(default) if doc]
    deployment = _one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = _container(docs)
    assert not any(arg.startswith(("--replica-id", "--advertise-address")) for arg in container["args"])
    assert "POD_IP" not in _env(container)
    config = _parse_args(container)
    assert config.store == "sqlite"
    tweaked = helm.run(
        "template", "rel", str(CHART), "--namespace", "wo-system",
        "--set", "podAntiAffinity.type=required", "--set", "podDisruptionBudget.maxUnavailable=3",
        "--set", "podAntiAffinity.topologyKey=zone",
    ).stdout  # fmt: skip
    assert tweaked == default
    assert "PodDisruptionBudget" not in default and "affinity" not in default


def test_the_replicated_install_is_accepted_by_the_api_server(cluster: Cluster, namespace: str, helm: Helm) -> None:
    """Server-side dry run of the Deployment and the PodDisruptionBudget under the restricted Pod Security
    Standard: the API server's own validation of policy/v1 and of the affinity terms."""
    _label_restricted(cluster, namespace)
    docs = helm.template(*THREE, "--set", "podAntiAffinity.type=required")
    for kind in ("Deployment", "PodDisruptionBudget"):
        doc = _one(docs, kind)
        doc["metadata"]["namespace"] = namespace
        result = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=json.dumps(doc),
                                 check=False)  # fmt: skip
        assert result.returncode == 0 and "PodSecurity" not in result.stderr, result.stderr
    broken = _one(docs, "PodDisruptionBudget")
    broken["metadata"]["namespace"] = namespace
    broken["spec"]["minAvailable"] = 1  # control: the server does validate it (both bounds set is an error)
    refused = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=json.dumps(broken),
                              check=False)  # fmt: skip
    assert refused.returncode != 0 and "minAvailable" in refused.stderr, refused.stderr
