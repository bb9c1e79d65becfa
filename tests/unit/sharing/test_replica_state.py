"""kopf's handler memory per replica: one replica handling a change never hides it from another."""

from __future__ import annotations

import warnings
from typing import Any

import kopf

from webhook_operator.config import OperatorConfig
from webhook_operator.handlers.lifecycle import ANNOTATION_PREFIX, KOPF_WORKER_LIMIT, configure
from webhook_operator.handlers.replica_state import ReplicaDiffBaseStorage, ReplicaProgressStorage


def body(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> kopf.Body:
    return kopf.Body({"apiVersion": "events.open-metadata.org/v1alpha1", "kind": "Webhook",
                      "metadata": {"name": "h", "namespace": "ns", "uid": "u-1", "annotations": annotations or {}},
                      "spec": spec})  # fmt: skip


def test_what_one_replica_handled_is_still_new_to_another() -> None:
    a, b = ReplicaDiffBaseStorage(), ReplicaDiffBaseStorage()
    webhook = body({"enabled": True})
    essence = a.build(body=webhook)
    patch = kopf.Patch()
    a.store(body=webhook, patch=patch, essence=essence)
    assert a.fetch(body=webhook) == essence
    assert b.fetch(body=webhook) is None  # b has not handled it: kopf runs its handler there too
    assert not patch  # nothing written to the object for the others to read


def test_progress_is_per_replica_but_the_touch_that_wakes_kopf_is_an_annotation() -> None:
    a, b = ReplicaProgressStorage(prefix=ANNOTATION_PREFIX), ReplicaProgressStorage(prefix=ANNOTATION_PREFIX)
    webhook = body({"enabled": True})
    patch = kopf.Patch()
    a.store(key=kopf.HandlerId("webhook_changed"), record={"retries": 1, "delayed": "soon"}, body=webhook, patch=patch)
    assert not patch and a.fetch(key=kopf.HandlerId("webhook_changed"), body=webhook) == {"retries": 1,
                                                                                         "delayed": "soon"}  # fmt: skip
    assert b.fetch(key=kopf.HandlerId("webhook_changed"), body=webhook) is None
    a.purge(key=kopf.HandlerId("webhook_changed"), body=webhook, patch=patch)
    assert a.fetch(key=kopf.HandlerId("webhook_changed"), body=webhook) is None
    touch = kopf.Patch()
    a.touch(body=webhook, patch=touch, value="2026-01-01T00:00:00")
    assert f"{ANNOTATION_PREFIX}/touch-dummy" in touch["metadata"]["annotations"]
    # … and neither the touch nor an old operator's annotations count as a change of the object
    noisy = body({"enabled": True}, {f"{ANNOTATION_PREFIX}/touch-dummy": "x",
                                     f"{ANNOTATION_PREFIX}/last-handled-configuration": "{}"})  # fmt: skip
    assert b.clear(essence=ReplicaDiffBaseStorage().build(body=noisy)) == b.clear(
        essence=ReplicaDiffBaseStorage().build(body=webhook)
    )


def test_only_the_shared_store_switches_kopf_to_per_replica_memory() -> None:
    shared, single = kopf.OperatorSettings(), kopf.OperatorSettings()
    with warnings.catch_warnings():  # no deprecated kopf setting is used
        warnings.simplefilter("error", DeprecationWarning)
        configure(shared, OperatorConfig(store="postgres"))
        configure(single, OperatorConfig())
    assert shared.queueing.worker_limit == single.queueing.worker_limit == KOPF_WORKER_LIMIT  # bounded: 10,000 Webhooks
    assert isinstance(shared.persistence.diffbase_storage, ReplicaDiffBaseStorage)
    assert isinstance(shared.persistence.progress_storage, ReplicaProgressStorage)
    assert type(single.persistence.diffbase_storage) is kopf.AnnotationsDiffBaseStorage
    assert type(single.persistence.progress_storage) is kopf.AnnotationsProgressStorage
