"""The chart's PostgreSQL store (issue 15, item 4, chart side): ``store.type=postgres`` renders no claim and no store
volume, runs ``--store=postgres`` and takes the DSN from an existing Secret as ``WEBHOOK_OPERATOR_POSTGRES_DSN``
(``secretKeyRef``: the chart never holds the value); the pod keeps its hardening with ``/tmp`` as its only writable
mount; the Deployment rolls instead of being recreated (several replicas: test_chart_replicas.py). The default
(SQLite) install renders as before. Rendered with the real
helm and parsed by the operator's own argument parser (see test_packaging.py for the schema's refusals and the
server-side Pod Security check of this variant)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.test_packaging import (
    CHART,
    POSTGRES_VALUES,
    ROOT,
    Doc,
    Helm,
    _container,
    _kind,
    _one,
    _parse_args,
    _pod,
)

CNPG_EXAMPLE = ROOT / "docs" / "examples" / "cnpg-cluster.yaml"
PG = ("--set", "store.type=postgres", "--set", "store.postgres.existingSecret=wo-pg")
DSN_ENV = "WEBHOOK_OPERATOR_POSTGRES_DSN"


@pytest.fixture(scope="module")
def pg_docs(helm: Helm) -> list[Doc]:
    return helm.template(*PG)


def _env(container: dict[str, Any]) -> dict[str, Doc]:
    return {e["name"]: e for e in container["env"]}


def test_postgres_store_has_no_claim_and_no_store_volume(pg_docs: list[Doc], helm: Helm) -> None:
    assert not _kind(pg_docs, "PersistentVolumeClaim")
    assert "store" not in {v["name"] for v in _pod(pg_docs)["volumes"]}
    container = _container(pg_docs)
    assert "store" not in {m["name"] for m in container["volumeMounts"]}
    assert not any(arg.startswith(("--store-path", "--store-sync")) for arg in container["args"]), "SQLite-only flags"
    # The persistence values (enabled by default) are SQLite's: with PostgreSQL even an existing claim is not mounted.
    claimed = helm.template(*PG, "--set", "persistence.existingClaim=old-store", "--set", "persistence.enabled=true")
    assert "old-store" not in json.dumps(claimed)


def test_postgres_dsn_is_an_env_var_from_the_existing_secret(pg_docs: list[Doc], helm: Helm) -> None:
    container = _container(pg_docs)
    assert _env(container)[DSN_ENV] == {"name": DSN_ENV, "valueFrom": {"secretKeyRef": {"name": "wo-pg", "key": "dsn"}}}
    config = _parse_args(container)
    assert config.store == "postgres"
    assert config.postgres_dsn_file is None, "one DSN source only: the variable"
    assert not any("postgres" in arg and "://" in arg for arg in container["args"])
    # Nothing of the DSN is rendered into any object: no Secret of the chart's own, no value in the pod.
    assert not _kind(pg_docs, "Secret")
    keyed = _container(helm.template(*PG, "--set", "store.postgres.existingSecretKey=uri"))
    assert _env(keyed)[DSN_ENV]["valueFrom"]["secretKeyRef"] == {"name": "wo-pg", "key": "uri"}


def test_postgres_pod_keeps_the_hardening_with_only_tmp_writable(pg_docs: list[Doc], helm: Helm) -> None:
    default = helm.template()
    deployment = _one(pg_docs, "Deployment")
    # One pod by default, rolled: old and new share the work through leases while they overlap (issue 15).
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}  # fmt: skip
    pod = _pod(pg_docs)
    assert pod["securityContext"] == _pod(default)["securityContext"]
    container = _container(pg_docs)
    assert container["securityContext"] == _container(default)["securityContext"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly", False)}
    assert writable == {"/tmp"} == {_env(container)["TMPDIR"]["value"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "64Mi"}


def test_default_install_stays_sqlite_on_its_claim(helm: Helm) -> None:
    default = helm.run("template", "rel", str(CHART), "--namespace", "wo-system").stdout
    # Explicitly SQLite, with a DSN Secret named but unused: the same bytes as the default render.
    explicit = helm.run(
        "template", "rel", str(CHART), "--namespace", "wo-system",
        "--set", "store.type=sqlite", "--set", "store.postgres.existingSecret=unused",
    ).stdout  # fmt: skip
    assert explicit == default
    docs = [doc for doc in yaml.safe_load_all(default) if doc]
    container = _container(docs)
    config = _parse_args(container)
    assert (config.store, config.store_path) == ("sqlite", Path("/var/lib/webhook-operator/store.db"))
    assert DSN_ENV not in _env(container)
    pvc = _one(docs, "PersistentVolumeClaim")
    assert {v["name"]: v for v in _pod(docs)["volumes"]}["store"]["persistentVolumeClaim"] == {
        "claimName": pvc["metadata"]["name"]
    }


def test_install_notes_name_the_dsn_secret_and_no_claim(helm: Helm) -> None:
    notes = helm.run("install", "rel", str(CHART), "-n", "wo-system", "--dry-run=client", *PG).stdout
    notes = notes[notes.index("NOTES:") :]
    assert "PostgreSQL" in notes and "wo-pg" in notes and "dsn" in notes
    assert "PersistentVolumeClaim" not in notes and "LOST" not in notes
    default = helm.run("install", "rel", str(CHART), "-n", "wo-system", "--dry-run=client").stdout
    assert "PostgreSQL" not in default and "PersistentVolumeClaim rel-webhook-operator-store" in default


def test_schema_explains_why_sqlite_has_one_replica() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    replicas = schema["properties"]["replicaCount"]
    assert "maximum" not in replicas, "the bound depends on the store (the top-level if/then)"
    assert "every event" in replicas["description"] and "lease" in replicas["description"]
    assert schema["then"]["properties"]["replicaCount"]["maximum"] == 1
    assert schema["if"]["not"]["properties"]["store"]["properties"]["type"] == {"const": "postgres"}
    store = schema["properties"]["store"]["properties"]
    assert store["type"]["enum"] == ["sqlite", "postgres"]


def test_ci_postgres_values_and_cnpg_example_wire_the_app_secret(helm: Helm) -> None:
    """The CloudNativePG example of docs/scale-out.md: its Cluster's app Secret (``<cluster>-app``, key ``uri``) is
    the DSN Secret the docs and ci/postgres-values.yaml pass to the chart."""
    cluster = yaml.safe_load(CNPG_EXAMPLE.read_text())
    assert (cluster["apiVersion"], cluster["kind"]) == ("postgresql.cnpg.io/v1", "Cluster")
    secret = f"{cluster['metadata']['name']}-app"
    values = yaml.safe_load(POSTGRES_VALUES.read_text())["store"]
    assert values == {"type": "postgres", "postgres": {"existingSecret": secret, "existingSecretKey": "uri"}}
    docs = (ROOT / "docs" / "scale-out.md").read_text()
    assert "docs/examples/cnpg-cluster.yaml" in docs
    assert f"store.postgres.existingSecret={secret}" in docs and "store.postgres.existingSecretKey=uri" in docs
    rendered = _container(helm.template("-f", str(POSTGRES_VALUES)))
    assert _env(rendered)[DSN_ENV]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "uri"}
