"""StatusWriter and EventRecorder against a real API server, through the official client: the status subresource,
CRD validation, printer columns, ``kubectl wait``, coalescing, 404s, Events with rate limiting, and catching up
after the API server was unreachable."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from support.cluster import Cluster
from support.webhooks import base_spec, manifest
from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.api.webhook import WebhookState as S
from webhook_operator.api.webhook import WebhookStatus
from webhook_operator.status import EventRecorder, ObjectRef, OperatorConditions, StatusWriter
from webhook_operator.status.summary import pruned

NOW = time.time()


def snap(key: str, state: S = S.ACTIVE, delivered: int = 0, **kw: Any) -> WebhookSnapshot:
    reason = {
        S.ACTIVE: Reason.DELIVERING,
        S.AWAITING_RETRY: Reason.DELIVERY_FAILING,
        S.RETRY_LIMIT_REACHED: Reason.RETRY_LIMIT_REACHED,
    }[state]
    message = {S.ACTIVE: f"{delivered} events delivered"}.get(state, "attempt 1 failed: HTTP 503")
    failing = state is not S.ACTIVE
    kw.setdefault("last_successful_at", NOW - 60 if delivered else None)
    if failing:
        kw.setdefault("last_failed_at", NOW - 5)
        kw.setdefault("last_failed_status_code", 503)
        kw.setdefault("last_failed_reason", "HTTP 503")
        kw.setdefault("next_attempt_at", NOW + 30 if state is S.AWAITING_RETRY else None)
    return WebhookSnapshot(key, state, reason, message, delivered, 3 if failing else 0, 2 if failing else 0, **kw)


def new_client(kubeconfig: Path) -> k8s.ApiClient:
    """An ApiClient of its own for this kubeconfig (the untyped loader, typed)."""
    load = cast(Callable[[str], k8s.ApiClient], k8s_config.new_client_from_config)
    return load(str(kubeconfig))


@pytest.fixture
def api_client(cluster: Cluster) -> Iterator[k8s.ApiClient]:
    api = new_client(cluster.kubeconfig)
    yield api
    cast(Any, api).close()


@pytest.fixture
async def writers() -> AsyncIterator[list[StatusWriter]]:
    """Writers registered here are stopped after the test."""
    made: list[StatusWriter] = []
    yield made
    for writer in made:
        await writer.stop(grace=5)


@pytest.fixture
def recorder(api_client: k8s.ApiClient) -> Iterator[EventRecorder]:
    rec = EventRecorder(api_client, window=60)
    yield rec
    rec.close()


def create_webhook(cluster: Cluster, namespace: str, name: str) -> tuple[str, dict[str, Any]]:
    cluster.apply(manifest(name, base_spec(), namespace))
    obj = cluster.get_json("webhook", name, "-n", namespace)
    return f"{namespace}/{name}", obj


async def kubectl(cluster: Cluster, *args: str, check: bool = True) -> Any:
    """kubectl in a thread, so the writer keeps running on the event loop meanwhile."""
    return await asyncio.to_thread(cluster.kubectl, *args, check=check)


async def stored_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = await kubectl(cluster, "get", "webhook", name, "-n", namespace, "-o", "json")
    status: dict[str, Any] = json.loads(out.stdout).get("status") or {}
    return status


async def eventually(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_status_goes_through_the_subresource_and_validates(
    cluster: Cluster, webhook_crd: None, namespace: str, api_client: k8s.ApiClient, writers: list[StatusWriter]
) -> None:
    key, obj = create_webhook(cluster, namespace, "hook")
    writer = StatusWriter(api_client, interval=0.2)
    writers.append(writer)
    writer.set_generation(key, obj["metadata"]["generation"], uid=obj["metadata"]["uid"])
    writer.webhook_changed(snap(key, delivered=42))
    assert await writer.flush_now() == 1
    status = await stored_status(cluster, namespace, "hook")
    assert status["observedGeneration"] == 1 and status["status"] == "active"
    assert status["counts"] == {"delivered": 42, "failed": 0, "pending": 0}
    assert status["conditions"][0]["type"] == "Ready" and status["conditions"][0]["status"] == "True"
    WebhookStatus.model_validate(status)

    table = (await kubectl(cluster, "get", "webhooks", "-n", namespace)).stdout.splitlines()
    assert table[1].split()[:6] == ["hook", "Generic", "active", "True", "42", "0"], table

    # Every failing shape validates against the CRD; nextAttempt comes and goes.
    writer.webhook_changed(snap(key, S.AWAITING_RETRY, delivered=42))
    assert await writer.flush_now() == 1
    status = await stored_status(cluster, namespace, "hook")
    assert status["status"] == "awaitingRetry" and status["failureDetails"]["lastFailedStatusCode"] == 503
    assert status["failureDetails"]["nextAttempt"].endswith("Z")
    writer.webhook_changed(snap(key, S.RETRY_LIMIT_REACHED, delivered=42))
    writer.set_extra(key, OperatorConditions(warnings=("spec.webhookConfig.secretKey is inline",)))
    assert await writer.flush_now() == 1
    status = await stored_status(cluster, namespace, "hook")
    assert "nextAttempt" not in status["failureDetails"]
    types = {c["type"]: c for c in status["conditions"]}
    assert types["Stalled"]["status"] == "True" and "Warning: spec.webhookConfig" in types["Ready"]["message"]
    WebhookStatus.model_validate(status)
    assert writer.stats.patch_failures_total == 0

    # The spec was never touched: only the status subresource was written.
    after = cluster.get_json("webhook", "hook", "-n", namespace)
    assert after["metadata"]["generation"] == 1 and after["spec"] == obj["spec"]
    # What the writer remembers is exactly what the API server stores, so nothing is rewritten.
    writer.webhook_changed(snap(key, S.RETRY_LIMIT_REACHED, delivered=42))
    assert await writer.flush_now() == 0


async def test_rapid_snapshots_make_at_most_two_patches(
    cluster: Cluster, webhook_crd: None, namespace: str, api_client: k8s.ApiClient, writers: list[StatusWriter]
) -> None:
    key, obj = create_webhook(cluster, namespace, "busy")
    writer = StatusWriter(api_client, interval=2.0)
    writers.append(writer)
    writer.set_generation(key, 1, uid=obj["metadata"]["uid"])
    await writer.start()
    started = time.monotonic()
    for i in range(200):
        writer.webhook_changed(snap(key, delivered=i + 1))
        await asyncio.sleep(0.004)
    assert time.monotonic() - started < 1.5

    async def final_stored() -> bool:
        return bool((await stored_status(cluster, namespace, "busy")).get("counts", {}).get("delivered") == 200)

    await eventually(final_stored, what="the final state")
    await asyncio.sleep(2.5)  # and nothing else follows
    assert writer.patches_by_key[key] <= 2, writer.patches_by_key
    assert writer.stats.patch_failures_total == 0


async def test_kubectl_wait_sees_ready_false_and_true(
    cluster: Cluster, webhook_crd: None, namespace: str, api_client: k8s.ApiClient, writers: list[StatusWriter]
) -> None:
    key, obj = create_webhook(cluster, namespace, "waited")
    writer = StatusWriter(api_client, interval=0.5)
    writers.append(writer)
    writer.set_generation(key, 1, uid=obj["metadata"]["uid"])
    await writer.start()
    writer.webhook_changed(snap(key, S.AWAITING_RETRY))
    await kubectl(cluster, "wait", "--for=condition=Ready=false", "webhook/waited", "-n", namespace, "--timeout=30s")
    writer.webhook_changed(snap(key, S.ACTIVE, delivered=1))
    await kubectl(cluster, "wait", "--for=condition=Ready", "webhook/waited", "-n", namespace, "--timeout=30s")
    # kstatus: observedGeneration matches, so `kubectl wait --for=jsonpath` style checks agree too.
    await kubectl(
        cluster,
        "wait",
        "--for=jsonpath={.status.observedGeneration}=1",
        "webhook/waited",
        "-n",
        namespace,
        "--timeout=30s",
    )


async def test_deleted_webhook_is_dropped_quietly(
    cluster: Cluster,
    webhook_crd: None,
    namespace: str,
    api_client: k8s.ApiClient,
    writers: list[StatusWriter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key, obj = create_webhook(cluster, namespace, "doomed")
    writer = StatusWriter(api_client, interval=0.1)
    writers.append(writer)
    writer.set_generation(key, 1, uid=obj["metadata"]["uid"])
    writer.webhook_changed(snap(key, delivered=1))
    assert await writer.flush_now() == 1
    await kubectl(cluster, "delete", "webhook", "doomed", "-n", namespace)
    caplog.set_level(logging.DEBUG, logger="webhook_operator.status")
    writer.webhook_changed(snap(key, delivered=2))
    writer.webhook_changed(snap(f"{namespace}/never-existed", delivered=1))
    assert await writer.flush_now() == 2  # both answered 404 ...
    assert await writer.flush_now() == 0  # ... and were forgotten
    assert key not in writer.patches_by_key and writer.stats.patch_failures_total == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_events_on_transitions_with_rate_limiting(
    cluster: Cluster,
    webhook_crd: None,
    namespace: str,
    api_client: k8s.ApiClient,
    writers: list[StatusWriter],
    recorder: EventRecorder,
) -> None:
    key, obj = create_webhook(cluster, namespace, "noisy")
    writer = StatusWriter(api_client, interval=0.1, events=recorder)
    writers.append(writer)
    writer.set_generation(key, 1, uid=obj["metadata"]["uid"])
    writer.webhook_changed(snap(key, delivered=1))
    writer.webhook_changed(snap(key, S.AWAITING_RETRY, delivered=1))  # failing
    writer.webhook_changed(snap(key, S.ACTIVE, delivered=2))  # recovered
    writer.webhook_changed(snap(key, S.AWAITING_RETRY, delivered=2))  # failing again, inside the window
    writer.record_event(key, "Warning", "InlineSecret", "spec.webhookConfig.secretKey is set inline; use secretKeyRef")
    await writer.flush_now()

    out = await kubectl(
        cluster, "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=noisy", "-o", "json"
    )
    events = json.loads(out.stdout)["items"]
    by_reason = {e["reason"]: e for e in events}
    assert sorted(e["reason"] for e in events) == ["DeliveryFailing", "DeliveryRecovered", "InlineSecret"]
    failing = by_reason["DeliveryFailing"]
    assert failing["type"] == "Warning" and failing["count"] == 1
    assert by_reason["DeliveryRecovered"]["type"] == "Normal"
    assert failing["involvedObject"] == {
        "apiVersion": "events.open-metadata.org/v1alpha1",
        "kind": "Webhook",
        "name": "noisy",
        "namespace": namespace,
        "uid": obj["metadata"]["uid"],
    }
    assert failing["source"]["component"] == "webhook-operator"
    assert failing["reportingComponent"] == "webhook-operator"
    assert recorder.suppressed_total == 1
    # `kubectl describe` lists them.
    describe = (await kubectl(cluster, "describe", "webhook", "noisy", "-n", namespace)).stdout
    assert "DeliveryFailing" in describe and "InlineSecret" in describe


async def test_repeats_after_the_window_increment_count(
    cluster: Cluster, webhook_crd: None, namespace: str, api_client: k8s.ApiClient
) -> None:
    key, obj = create_webhook(cluster, namespace, "flappy")
    recorder = EventRecorder(api_client, window=0.5)
    try:
        ref = ObjectRef.from_key(key, obj["metadata"]["uid"])
        assert await recorder.record(ref, "Warning", "DeliveryFailing", "attempt 1 failed: HTTP 503")
        assert not await recorder.record(ref, "Warning", "DeliveryFailing", "attempt 1 failed: HTTP 503")
        await asyncio.sleep(0.6)
        assert await recorder.record(ref, "Warning", "DeliveryFailing", "attempt 1 failed: HTTP 500")
    finally:
        recorder.close()
    out = await kubectl(
        cluster, "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=flappy", "-o", "json"
    )
    [event] = json.loads(out.stdout)["items"]
    assert event["count"] == 3 and event["message"] == "attempt 1 failed: HTTP 500"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening) for the whole test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


async def test_status_catches_up_after_the_api_server_was_unreachable(
    cluster: Cluster,
    webhook_crd: None,
    namespace: str,
    writers: list[StatusWriter],
    closed_port: int,
    tmp_path: Path,
) -> None:
    key, obj = create_webhook(cluster, namespace, "patient")
    broken = yaml.safe_load(cluster.kubeconfig.read_text())
    for entry in broken["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{closed_port}"
    broken_path = tmp_path / "broken-kubeconfig"
    broken_path.write_text(yaml.safe_dump(broken))
    current = {"path": broken_path}
    made: list[k8s.ApiClient] = []

    def factory() -> k8s.ApiClient:
        api = new_client(current["path"])
        made.append(api)
        return api

    writer = StatusWriter(factory, interval=0.1, backoff_initial=0.1, backoff_max=0.5)
    writers.append(writer)
    writer.set_generation(key, 1, uid=obj["metadata"]["uid"])
    await writer.start()
    writer.webhook_changed(snap(key, delivered=7))

    async def retried() -> bool:
        return writer.stats.patch_failures_total >= 3

    await eventually(retried, what="retries against the unreachable server")
    assert await stored_status(cluster, namespace, "patient") == {}
    writer.webhook_changed(snap(key, delivered=9))  # the state moves on meanwhile

    current["path"] = cluster.kubeconfig  # the API server is reachable again

    async def landed() -> bool:
        return bool((await stored_status(cluster, namespace, "patient")).get("counts", {}).get("delivered") == 9)

    await eventually(landed, what="the status to catch up")
    assert len(made) >= 2  # the client was rebuilt after connection failures
    stored = await stored_status(cluster, namespace, "patient")
    assert pruned(stored)["status"] == "active"
