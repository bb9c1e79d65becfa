"""The status writer with work sharing: only the owner writes status and posts Events, each patch after the claim."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.api.webhook_status import WebhookState as S
from webhook_operator.sharing.claim import StatusClaim
from webhook_operator.status.summary import OperatorConditions
from webhook_operator.status.writer import StatusWriter
from webhook_operator.store.base import StoreUnavailable
from webhook_operator.store.memory import MemoryStore

from ..status.fakes import Recorder, unused_client
from .replicas import Clock


class Patches:
    def __init__(self) -> None:
        self.keys: list[str] = []

    def __call__(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.keys.append(f"{namespace}/{name}")


class Holder:
    """Stands in for the lease manager: what this replica believes it holds."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.held: dict[str, int] = {}

    def owns(self, key: str) -> bool:
        return key in self.held

    def tokens(self, webhooks: Any) -> dict[str, int]:
        return {w: self.held[w] for w in webhooks if w in self.held}


def snap(key: str, delivered: int = 0, state: S = S.ACTIVE) -> WebhookSnapshot:
    reason = Reason.DELIVERING if state is S.ACTIVE else Reason.DELIVERY_FAILING
    return WebhookSnapshot(key, state, reason, f"{delivered} delivered", delivered, 0, 0)


async def rig(clock: Clock) -> tuple[MemoryStore, Holder, StatusWriter, Patches, Recorder]:
    store = MemoryStore(clock=clock)
    await store.open()
    holder = Holder("r0")
    patches = Patches()
    events = Recorder(unused_client)
    writer = StatusWriter(patcher=patches, interval=0.0, events=events, clock=time.monotonic)
    writer.share(holder.owns, StatusClaim(store, holder))
    return store, holder, writer, patches, events


async def test_only_owned_webhooks_get_status_and_events() -> None:
    store, holder, writer, patches, events = await rig(Clock())
    try:
        holder.held.update(await store.acquire("r0", ["ns/mine"], 10))
        for key in ("ns/mine", "ns/theirs"):  # the reconciler runs on every replica
            writer.set_generation(key, 1, uid=f"u-{key}")
            writer.set_extra(key, OperatorConditions(configuration_error="Secret hmac not found"))
            writer.record_event(key, "Warning", "InlineSecret", "inline secret")
        writer.webhook_changed(snap("ns/mine", 3))
        await writer.flush_now()
        assert patches.keys == ["ns/mine"]
        assert {reason for reason, _, _ in events.sent} == {"InlineSecret", "ConfigurationError"}
        assert len(events.sent) == 2  # the other webhook's Events are its owner's
    finally:
        await writer.stop(grace=1)
        events.close()


async def test_a_webhook_taken_over_in_the_store_is_not_patched_though_this_replica_believes_it_owns_it() -> None:
    clock = Clock()
    store, holder, writer, patches, events = await rig(clock)
    try:
        holder.held.update(await store.acquire("r0", ["ns/a", "ns/b"], 10))
        clock.now += 11  # expired in the store (its clock); this replica has not noticed yet
        await store.acquire("r1", ["ns/b"], 10)  # … and r1 took ns/b over
        writer.webhook_changed(snap("ns/a", 1))
        writer.webhook_changed(snap("ns/b", 1))
        await writer.flush_now()
        assert patches.keys == []  # ns/a's lease expired too: the claim refuses both
        holder.held.update(await store.acquire("r0", ["ns/a"], 10))  # a fresh token for ns/a
        writer.webhook_changed(snap("ns/a", 2))
        writer.webhook_changed(snap("ns/b", 2))
        await writer.flush_now()
        assert patches.keys == ["ns/a"]
    finally:
        await writer.stop(grace=1)
        events.close()


async def test_a_claim_the_store_cannot_answer_is_retried_not_dropped() -> None:
    store, holder, writer, patches, events = await rig(Clock())
    try:
        holder.held.update(await store.acquire("r0", ["ns/a"], 10))
        store.fail_reads = True
        writer.webhook_changed(snap("ns/a", 1))
        await writer.flush_now(grace=0.2)
        assert patches.keys == []
        store.fail_reads = False
        await writer.flush_now(grace=3)
        assert patches.keys == ["ns/a"]
    finally:
        await writer.stop(grace=1)
        events.close()


async def test_claims_of_writes_started_together_are_one_store_call() -> None:
    store = MemoryStore()
    await store.open()
    holder = Holder("r0")
    holder.held.update(await store.acquire("r0", [f"ns/{i}" for i in range(4)], 10))
    calls: list[dict[str, int]] = []
    valid = store.valid

    async def counting(replica: str, leases: dict[str, int]) -> set[str]:
        calls.append(dict(leases))
        return await valid(replica, leases)

    store.valid = counting  # type: ignore[method-assign]
    claim = StatusClaim(store, holder)
    answers = await asyncio.gather(*(claim(f"ns/{i}") for i in range(4)), claim("ns/unknown"))
    assert answers == [True, True, True, True, False]
    assert len(calls) == 1 and set(calls[0]) == {f"ns/{i}" for i in range(4)}
    store.fail_reads = True
    with pytest.raises(StoreUnavailable):  # a claim the store cannot answer never passes
        await claim("ns/0")
