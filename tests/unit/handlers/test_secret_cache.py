"""The operator's Secret cache under the opt-in rule: values of unlabelled Secrets are never decoded or kept, and
an event that says a Secret is no longer selected (label removed: DELETED from a label-selected watch) drops the
cached value so the next read sees the real state. The API is replaced by a scripted ``_get`` (unit level)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from kubernetes import client as k8s

from webhook_operator.handlers.kube import NoSecretAccess, SecretCache, secret_data
from webhook_operator.reconcile import SECRET_OPT_IN_LABEL, SecretAccessDenied, SecretData

VALUE = "db-password-4f1c9e"
LABELLED = {SECRET_OPT_IN_LABEL: "true"}


def _body(labels: dict[str, str], event_name: str = "db") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team-a", "name": event_name, "labels": labels},
        "data": {"password": base64.b64encode(VALUE.encode()).decode()},
    }


class ScriptedCache(SecretCache):
    """``_get`` answers from a list of results; ``during_get`` runs inside the first GET (a watch event racing it)."""

    def __init__(self, results: list[SecretData | None]) -> None:
        super().__init__(k8s.ApiClient())
        self.results = results
        self.gets = 0
        self.during_get: Any = None

    def _get(self, namespace: str, name: str) -> SecretData | None:
        self.gets += 1
        if self.during_get is not None:
            hook, self.during_get = self.during_get, None
            hook()
        return self.results.pop(0)


def test_values_of_an_unlabelled_secret_are_not_decoded() -> None:
    assert secret_data(_body({})).values == {}
    assert secret_data(_body({SECRET_OPT_IN_LABEL: "false"})).values == {}
    assert secret_data(_body(LABELLED)).values == {"password": VALUE}


async def test_an_event_without_the_label_drops_the_cached_value() -> None:
    cache = ScriptedCache([SecretData(labels={}, values={})])
    cache.observe(None, _body(LABELLED))
    assert (await cache.read("team-a", "db")) == SecretData(labels=LABELLED, values={"password": VALUE})
    # The label-selected watch reports the removal as DELETED, with the label already gone.
    cache.observe("DELETED", _body({}))
    again = await cache.read("team-a", "db")
    assert cache.gets == 1 and again is not None and again.values == {}


async def test_a_modified_event_that_lost_the_label_is_not_cached_either() -> None:
    cache = ScriptedCache([SecretData(labels={}, values={})])
    cache.observe("MODIFIED", _body(LABELLED))
    cache.observe("MODIFIED", _body({SECRET_OPT_IN_LABEL: "no"}))
    data = await cache.read("team-a", "db")
    assert cache.gets == 1 and data is not None and data.values == {}


async def test_a_get_overtaken_by_a_watch_event_is_not_cached_stale() -> None:
    stale = SecretData(labels=LABELLED, values={"password": VALUE})
    fresh = SecretData(labels={}, values={})
    cache = ScriptedCache([stale, fresh])
    cache.during_get = lambda: cache.observe("DELETED", _body({}))  # label removed while the first GET ran
    data = await asyncio.wait_for(cache.read("team-a", "db"), 5)
    assert data == fresh and cache.gets == 2
    assert (await cache.read("team-a", "db")) == fresh


async def test_without_secret_access_every_read_is_a_config_error() -> None:
    try:
        await NoSecretAccess().read("team-a", "db")
    except SecretAccessDenied as exc:
        assert "--read-secrets=false" in str(exc) and "rbac.clusterWideSecrets" in str(exc)
    else:
        raise AssertionError("expected SecretAccessDenied")


async def test_the_secret_watch_selects_opted_in_secrets_on_the_server() -> None:
    """The selector goes to the API server (kopf's label_selectors), not a client-side handler filter that would
    swallow the DELETED event of a label removal; and it applies to Secrets only."""
    import kopf
    from kopf._cogs.structs.references import Resource

    from webhook_operator.handlers import secrets

    settings = kopf.OperatorSettings()
    await secrets.select_opted_in(settings=settings)
    secret = Resource(group="", version="v1", plural="secrets", kind="Secret", namespaced=True)
    webhook = Resource(group="events.open-metadata.org", version="v1alpha1", plural="webhooks", namespaced=True)
    assert list(settings.watching.label_selectors.collect(secret)) == [f"{SECRET_OPT_IN_LABEL}=true"]
    assert list(settings.watching.label_selectors.collect(webhook)) == []
    registry = kopf.OperatorRegistry()
    secrets.register(registry)
    secrets.register(registry)  # idempotent
    handlers = list(registry._watching.get_all_handlers())
    assert len(handlers) == 1 and handlers[0].labels is None  # no client-side label filter


async def test_refresh_finds_a_label_removal_the_watch_missed() -> None:
    """kopf re-lists after each watch timeout; a Secret unlabelled in between is just absent from the new list
    (no DELETED event). The periodic re-read finds it and replaces the cached value."""
    unlabelled = SecretData(labels={}, values={})
    cache = ScriptedCache([unlabelled, None])
    cache.observe(None, _body(LABELLED))
    cache.observe(None, _body(LABELLED, event_name="gone"))
    cache.observe(None, _body(LABELLED, event_name="unused"))
    changed = await cache.refresh(keep=lambda namespace, name: name != "unused")
    assert changed == [("team-a", "db"), ("team-a", "gone")]
    assert (await cache.read("team-a", "db")) == unlabelled and (await cache.read("team-a", "gone")) is None
    assert cache.gets == 2  # "unused" was dropped, not re-read
    cache.results = [unlabelled, None]
    assert await cache.refresh(keep=lambda namespace, name: True) == []  # nothing changed since


async def test_the_refresh_loop_re_applies_the_webhooks_of_a_changed_secret() -> None:
    import kopf

    from webhook_operator.handlers import secrets

    class Reconciler:
        def __init__(self) -> None:
            self.changed: list[tuple[str, str]] = []

        def references(self, namespace: str, name: str) -> bool:
            return True

        async def secret_changed(self, namespace: str, name: str) -> int:
            self.changed.append((namespace, name))
            return 1

    class Service:
        reconciler = Reconciler()

    cache = ScriptedCache([SecretData(labels={}, values={})])
    cache.observe(None, _body(LABELLED))
    memo = kopf.Memo(service=Service(), secret_cache=cache)
    task = asyncio.create_task(secrets.refresh_loop(memo, interval=0.01))
    try:
        for _ in range(200):
            if Service.reconciler.changed:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert Service.reconciler.changed == [("team-a", "db")]
