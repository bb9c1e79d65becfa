"""The opt-in rule for Secrets (issue 13, finding 2): a Webhook may use only Secrets labelled
``events.open-metadata.org/webhook-secret: "true"``. Anything else is a configuration error naming the Secret, the
key and the label, and the value never reaches the registered target."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import pytest

from support.webhooks import SECRET_LABEL, base_spec
from webhook_operator.delivery.dispatcher import Dispatcher
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.graph import NullStatus
from webhook_operator.reconcile import (
    SECRET_OPT_IN_LABEL,
    Reconciler,
    Resource,
    SecretAccessDenied,
    SecretData,
    opted_in,
)

VALUE = "db-password-4f1c9e"
LABELLED = {SECRET_OPT_IN_LABEL: "true"}


class Secrets:
    """A SecretReader over a dict; ``reads`` counts reads per Secret."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], SecretData] = {}
        self.denied: set[str] = set()

    def set(self, name: str, labels: Mapping[str, str], **values: str) -> None:
        self.items[("team-a", name)] = SecretData(labels=dict(labels), values=values)

    async def read(self, namespace: str, name: str) -> SecretData | None:
        if namespace in self.denied:
            raise SecretAccessDenied(f"the operator may not read Secrets in namespace {namespace}")
        return self.items.get((namespace, name))


class Registrations:
    def __init__(self) -> None:
        self.targets: dict[str, WebhookTarget] = {}

    async def register(self, target: WebhookTarget) -> None:
        self.targets[target.key] = target

    async def unregister(self, key: str) -> None:
        self.targets.pop(key, None)


def _resource(**cfg: Any) -> Resource:
    spec = base_spec()
    spec["webhookConfig"].update(cfg)
    return Resource(namespace="team-a", name="hook", uid="u1", generation=1, spec=spec)


def _reconciler(secrets: Secrets) -> tuple[Reconciler, Registrations]:
    registrations = Registrations()
    return Reconciler(cast(Dispatcher, registrations), secrets, NullStatus()), registrations


HEADER = {"headersFrom": [{"name": "X-Db", "secretKeyRef": {"name": "db", "key": "password"}}]}
SIGNING = {"secretKeyRef": {"name": "db", "key": "password"}}
CA = {"tls": {"caBundleSecretRef": {"name": "db", "key": "password"}}}


def test_the_label_is_the_documented_one() -> None:
    assert SECRET_OPT_IN_LABEL == SECRET_LABEL == "events.open-metadata.org/webhook-secret"


@pytest.mark.parametrize("labels", [{}, {SECRET_OPT_IN_LABEL: "false"}, {SECRET_OPT_IN_LABEL: "yes"},
                                    {SECRET_OPT_IN_LABEL: "True"}, {"webhook-secret": "true"}])  # fmt: skip
def test_only_the_exact_label_value_true_opts_in(labels: dict[str, str]) -> None:
    assert not opted_in(labels)
    assert opted_in(LABELLED)
    assert not opted_in(None)


@pytest.mark.parametrize(("cfg", "where"), [(HEADER, "headersFrom[0]"), (SIGNING, "secretKeyRef"),
                                             (CA, "tls.caBundleSecretRef")])  # fmt: skip
async def test_an_unlabelled_secret_is_a_config_error_and_never_used(cfg: dict[str, Any], where: str) -> None:
    secrets = Secrets()
    secrets.set("db", {}, password=VALUE)
    reconciler, registrations = _reconciler(secrets)
    target = await reconciler.apply(_resource(**cfg))
    assert target is not None and registrations.targets["team-a/hook"] is target
    error = target.config_error or ""
    assert where in error and "Secret team-a/db" in error and "'password'" in error, error
    assert f'{SECRET_OPT_IN_LABEL}: "true"' in error, error
    assert VALUE not in repr(target.delivery_shape()) and VALUE not in error
    assert target.secrets == () and dict(target.secret_headers) == {} and target.ca_bundle is None


async def test_a_labelled_secret_is_used() -> None:
    secrets = Secrets()
    secrets.set("db", LABELLED, password=VALUE)
    reconciler, _ = _reconciler(secrets)
    target = await reconciler.apply(_resource(**HEADER))
    assert target is not None and target.config_error is None
    assert dict(target.secret_headers) == {"X-Db": VALUE}


async def test_losing_the_label_stops_the_use_at_once() -> None:
    secrets = Secrets()
    secrets.set("db", LABELLED, password=VALUE)
    reconciler, registrations = _reconciler(secrets)
    await reconciler.apply(_resource(**HEADER, **SIGNING))
    assert registrations.targets["team-a/hook"].secrets == (VALUE,)
    secrets.set("db", {}, password=VALUE)
    assert await reconciler.secret_changed("team-a", "db") == 1
    target = registrations.targets["team-a/hook"]
    assert target.config_error and SECRET_OPT_IN_LABEL in target.config_error
    assert target.secrets == () and dict(target.secret_headers) == {}
    assert VALUE not in target.sensitive_values  # nothing left to send or mask


async def test_a_reader_that_returns_values_of_an_unlabelled_secret_is_not_trusted() -> None:
    """The rule is the reconciler's own: even if a reader hands over values, no label means no use."""
    secrets = Secrets()
    secrets.items[("team-a", "db")] = SecretData(labels={"app": "db"}, values={"password": VALUE})
    reconciler, _ = _reconciler(secrets)
    target = await reconciler.apply(_resource(**HEADER))
    assert target is not None and target.config_error and dict(target.secret_headers) == {}


async def test_a_missing_secret_names_the_label_too() -> None:
    reconciler, _ = _reconciler(Secrets())
    target = await reconciler.apply(_resource(**HEADER))
    assert target is not None and target.config_error
    assert "Secret team-a/db (key 'password') not found or not labelled" in target.config_error
    assert SECRET_OPT_IN_LABEL in target.config_error


async def test_missing_and_unlabelled_secrets_read_the_same() -> None:
    """Issue 13 review: "not found" vs "not labelled" told a tenant without Secret access which names exist."""
    missing, _ = _reconciler(Secrets())
    unlabelled_secrets = Secrets()
    unlabelled_secrets.set("db", {}, password=VALUE)
    unlabelled, _ = _reconciler(unlabelled_secrets)
    one = await missing.apply(_resource(**HEADER))
    two = await unlabelled.apply(_resource(**HEADER))
    assert one is not None and two is not None and one.config_error == two.config_error


async def test_no_secret_access_is_a_config_error_not_a_retry_loop() -> None:
    secrets = Secrets()
    secrets.denied.add("team-a")
    reconciler, _ = _reconciler(secrets)
    target = await reconciler.apply(_resource(**HEADER))
    assert target is not None and target.config_error
    assert "may not read Secrets in namespace team-a" in target.config_error


def test_every_example_secret_opts_in() -> None:
    """The examples are what users copy: each Secret a Webhook there references carries the label."""
    from support.webhooks import EXAMPLES, load_documents

    checked = 0
    for path in EXAMPLES:
        docs = load_documents(path)
        secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
        for doc in docs:
            if doc["kind"] != "Webhook":
                continue
            cfg = doc["spec"]["webhookConfig"]
            refs = [cfg.get("secretKeyRef")] + [h["secretKeyRef"] for h in cfg.get("headersFrom") or []]
            for ref in filter(None, refs):
                assert opted_in(secrets[ref["name"]]["metadata"].get("labels")), f"{path.name}: {ref['name']}"
                checked += 1
    assert checked >= 3
