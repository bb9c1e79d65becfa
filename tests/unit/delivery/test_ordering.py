"""spec.delivery.ordering entity and none (issue 12, part 2) on the in-memory store, a scripted receiver and a
hand-driven clock: per-entity order under failures, other entities flowing while one is held, maxInFlight never
exceeded, a retry schedule per key, resume and skip, and a restart that resumes each held key exactly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookSpec, WebhookState
from webhook_operator.delivery.dispatcher import encode_event
from webhook_operator.delivery.keyed_worker import KeyedLaneWorker
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.delivery.sender import Outcome, OutcomeKind, Request
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.graph import Graph, NullStatus, build_graph
from webhook_operator.store.base import AttemptOutcome, AttemptQuery, KeyHold, RetryState, RoutedEvent
from webhook_operator.store.memory import MemoryStore

from .fakes import Clock, ScriptedSender

KEY = "ns/hook"
POLICY = RetryPolicy((10.0, 20.0))


def event(entity: str, n: int) -> ChangeEvent:
    return ChangeEvent.model_validate({
        "id": f"{entity}-{n:03d}", "eventType": "entityCreated", "entityType": "table", "entityId": entity,
        "timestamp": 1_700_000_000_000 + n, "entity": {"id": entity, "name": entity},
    })  # fmt: skip


def target(ordering: str = "entity", batch: int = 1, in_flight: int = 8) -> WebhookTarget:
    spec = WebhookSpec.model_validate({
        "webhookType": "Generic", "batchSize": batch,
        "eventFilters": [{"eventType": "entityCreated", "entities": ["table"]}],
        "webhookConfig": {"endpoint": "http://receiver.test/hook", "timeout": 5},
        "delivery": {"ordering": ordering, "maxInFlight": in_flight},
    })  # fmt: skip
    return WebhookTarget(key=KEY, spec=spec)


def entity_of(event_id: str) -> str:
    return event_id.split("-")[0]


class EntityReceiver(ScriptedSender):
    """Fails every request that carries an event of an entity in ``failing`` (while its count lasts; -1: always),
    holds requests while ``hold`` is clear, and counts how many are in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: dict[str, int] = {}
        self.fail_with = Outcome(OutcomeKind.RETRYABLE, 503, 1.0, "HTTP 503")
        self.hold = asyncio.Event()
        self.hold.set()
        self.in_flight = 0
        self.peak = 0
        self.delivered: list[str] = []  # event ids of the requests answered 2xx, in answer order

    async def send(self, request: Request) -> Outcome:
        self.requests.append(request)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.hold.wait()
            await asyncio.sleep(0)
        finally:
            self.in_flight -= 1
        body = json.loads(request.body)
        ids = [e["id"] for e in body["data"]] if "data" in body else [body["id"]]
        for entity in {entity_of(i) for i in ids}:
            left = self.failing.get(entity, 0)
            if left:
                self.failing[entity] = left - 1 if left > 0 else left
                return self.fail_with
        self.delivered.extend(ids)
        return self.default


class Rig:
    def __init__(self, store: MemoryStore | None = None, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.store = store or MemoryStore(clock=self.clock)
        self.sender = EntityReceiver()
        self.graph: Graph = build_graph(store=self.store, sender=self.sender, status=NullStatus(), clock=self.clock,
                                        retry=POLICY)  # fmt: skip

    @property
    def dispatcher(self) -> Any:
        return self.graph.dispatcher

    async def settle(self) -> None:
        await self.dispatcher.settled(within=5)

    def snapshot(self) -> Any:
        return self.dispatcher.snapshot(KEY)

    async def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.dispatcher.worker(KEY).kick()
        await self.settle()

    async def retry(self) -> RetryState:
        return (await self.store.lane_state(KEY)).retry


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    await r.graph.open()
    yield r
    await r.graph.close()


def per_entity(ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for i in ids:
        out.setdefault(entity_of(i), []).append(i)
    return out


def interleaved(entities: str, n: int) -> list[ChangeEvent]:
    return [event(e, i) for i in range(n) for e in entities]


async def test_a_failing_entity_holds_only_its_own_events_and_order_is_kept(rig: Rig) -> None:
    rig.sender.failing = {"A": 2}
    await rig.dispatcher.register(target())
    await rig.dispatcher.submit(interleaved("ABC", 4))
    await rig.settle()
    assert per_entity(rig.sender.delivered) == {"B": [f"B-{i:03d}" for i in range(4)],
                                                "C": [f"C-{i:03d}" for i in range(4)]}  # fmt: skip
    sent_a = [b for b in rig.sender.batches() if entity_of(b[0]) == "A"]
    assert sent_a == [["A-000"]], "A's later events wait behind its held batch"
    snap = rig.snapshot()
    assert snap.state is WebhookState.AWAITING_RETRY and snap.pending == 4
    assert "1 entities held for a retry" in snap.message and snap.next_attempt_at == rig.clock.now + 10.0
    await rig.advance(10.0)  # second attempt fails too
    assert rig.snapshot().next_attempt_at == rig.clock.now + 20.0
    await rig.advance(20.0)
    assert per_entity(rig.sender.delivered)["A"] == [f"A-{i:03d}" for i in range(4)]
    assert rig.snapshot().state is WebhookState.ACTIVE and rig.snapshot().pending == 0
    state = await rig.store.lane_state(KEY)
    assert state.retry.holds == () and state.counters.delivered == 12 and state.counters.failed == 2
    ids = {r.headers["X-Webhook-Delivery-Id"] for r in rig.sender.requests if b"A-000" in r.body}
    assert len(ids) == 1, "every attempt of A's held batch is the same delivery"
    attempts = [(r.outcome, r.attempt) for r in await rig.store.attempts(KEY, AttemptQuery())
                if r.event_ids == ["A-000"]]  # fmt: skip
    assert attempts == [(AttemptOutcome.FAILED, 1), (AttemptOutcome.FAILED, 2), (AttemptOutcome.DELIVERED, 3)]


async def test_a_batch_holds_one_entity_and_batch_size_applies_per_entity(rig: Rig) -> None:
    await rig.dispatcher.register(target(batch=3))
    await rig.dispatcher.submit(interleaved("AB", 5))
    await rig.settle()
    batches = rig.sender.batches()
    assert all(len({entity_of(i) for i in b}) == 1 and len(b) <= 3 for b in batches)
    assert sorted(batches) == [["A-000", "A-001", "A-002"], ["A-003", "A-004"], ["B-000", "B-001", "B-002"],
                               ["B-003", "B-004"]]  # fmt: skip


@pytest.mark.parametrize("ordering", ["entity", "none"])
async def test_max_in_flight_is_never_exceeded(rig: Rig, ordering: str) -> None:
    rig.sender.hold.clear()
    await rig.dispatcher.register(target(ordering, in_flight=4))
    await rig.dispatcher.submit(interleaved("ABCDEFGHIJ", 3))
    for _ in range(20):
        await asyncio.sleep(0)
    assert rig.sender.in_flight == 4, "as many as allowed, no more"
    rig.sender.hold.set()
    await rig.settle()
    assert rig.sender.peak == 4 and sorted(rig.sender.delivered) == sorted(e.id for e in interleaved("ABCDEFGHIJ", 3))
    worker = rig.dispatcher.worker(KEY)
    assert isinstance(worker, KeyedLaneWorker) and worker.peak_in_flight == 4
    if ordering == "entity":
        for entity, ids in per_entity(rig.sender.delivered).items():
            assert ids == sorted(ids), entity


async def test_held_batches_count_against_max_in_flight(rig: Rig) -> None:
    """A receiver that is down ends with at most maxInFlight keys held, not one per entity in the queue."""
    rig.sender.failing = dict.fromkeys("ABCDEFGHIJ", -1)
    await rig.dispatcher.register(target(in_flight=3))
    await rig.dispatcher.submit(interleaved("ABCDEFGHIJ", 2))
    await rig.settle()
    assert len(rig.sender.requests) == 3
    retry = await rig.retry()
    assert len(retry.holds) == 3 and retry.attempts == 1 and len(retry.held_qids) == 3
    assert rig.snapshot().state is WebhookState.AWAITING_RETRY and rig.snapshot().pending == 20
    rig.sender.failing = {}
    await rig.advance(10.0)
    assert len(rig.sender.delivered) == 20 and rig.snapshot().state is WebhookState.ACTIVE


async def test_each_key_has_its_own_schedule_and_retry_after(rig: Rig) -> None:
    rig.sender.failing = {"A": 1}
    await rig.dispatcher.register(target())
    await rig.dispatcher.submit([event("A", 0)])
    await rig.settle()
    await rig.advance(5.0)
    rig.sender.failing = {"B": 1}
    rig.sender.fail_with = Outcome(OutcomeKind.RETRYABLE, 429, 1.0, "HTTP 429", retry_after=30.0)
    await rig.dispatcher.submit([event("B", 0)])
    await rig.settle()
    holds = {h.key: h for h in (await rig.retry()).holds}
    assert holds["A"].next_attempt_at == rig.clock.now + 5.0 and holds["B"].next_attempt_at == rig.clock.now + 30.0
    assert (holds["A"].attempts, holds["B"].attempts) == (1, 1) and holds["B"].last_status_code == 429
    assert rig.snapshot().last_failed_status_code == 429, "status shows the most recent failure"
    await rig.advance(5.0)
    assert rig.sender.delivered == ["A-000"] and [h.key for h in (await rig.retry()).holds] == ["B"]
    await rig.advance(24.0)
    assert rig.sender.delivered == ["A-000"], "not before the receiver's Retry-After"
    await rig.advance(1.0)
    assert rig.sender.delivered == ["A-000", "B-000"] and (await rig.retry()) == RetryState()


async def test_the_end_of_one_keys_schedule_pauses_the_webhook_and_resume_sends_every_held_key(rig: Rig) -> None:
    rig.sender.failing = {"A": -1, "B": -1}
    await rig.dispatcher.register(target())
    await rig.dispatcher.submit([event("A", 0), event("B", 0), event("A", 1), event("C", 0)])
    await rig.settle()
    await rig.advance(10.0)
    await rig.advance(20.0)
    snap = rig.snapshot()
    assert snap.state is WebhookState.RETRY_LIMIT_REACHED and rig.sender.delivered == ["C-000"]
    sent = len(rig.sender.requests)
    await rig.dispatcher.submit([event("D", 0)])
    await rig.advance(3600.0)
    assert len(rig.sender.requests) == sent, "paused: nothing is sent, other entities included, until someone acts"
    rig.sender.failing = {}
    assert await rig.graph.operations.resume(KEY, "dana")
    await rig.settle()
    assert per_entity(rig.sender.delivered) == {"C": ["C-000"], "A": ["A-000", "A-001"], "B": ["B-000"],
                                                "D": ["D-000"]}  # fmt: skip
    assert rig.snapshot().state is WebhookState.ACTIVE and (await rig.retry()) == RetryState()


async def test_skip_dead_letters_every_held_batch_and_their_next_events_go(rig: Rig) -> None:
    rig.sender.failing = {"A": -1, "B": -1}
    await rig.dispatcher.register(target())
    await rig.dispatcher.submit([event("A", 0), event("B", 0), event("A", 1), event("B", 1), event("C", 0)])
    await rig.settle()
    assert sorted(await rig.graph.operations.skip(KEY, "erin")) == ["A-000", "B-000"]
    rig.sender.failing = {}
    await rig.settle()
    assert sorted(rig.sender.delivered) == ["A-001", "B-001", "C-000"]
    assert sorted(d.event_id for d in rig.store.dead_letters) == ["A-000", "B-000"]
    assert (await rig.retry()) == RetryState() and rig.snapshot().state is WebhookState.ACTIVE
    line = [r for r in await rig.store.attempts(KEY, AttemptQuery()) if r.outcome is AttemptOutcome.SKIPPED]
    assert len(line) == 1 and "held batches of 2 key(s) skipped by erin" in line[0].note


async def test_a_restart_resumes_each_held_key_exactly() -> None:
    first = Rig()
    await first.graph.open()
    first.sender.failing = {"A": 2, "B": 1}
    await first.dispatcher.register(target(batch=2))
    await first.dispatcher.submit([event("A", 0), event("A", 1), event("B", 0), event("A", 2), event("C", 0)])
    await first.settle()
    await first.advance(10.0)  # A fails its 2nd attempt, B is delivered on its 2nd, C went at once
    persisted = await first.retry()
    assert [(h.key, h.attempts) for h in persisted.holds] == [("A", 2)]
    assert first.snapshot().pending == 3
    await first.dispatcher.stop()  # the process goes away (the store keeps what was committed)

    again = Rig(first.store, first.clock)
    await again.graph.open()
    try:
        snap = await again.dispatcher.register(target(batch=2))
        assert snap.state is WebhookState.AWAITING_RETRY and snap.next_attempt_at == persisted.holds[0].next_attempt_at
        await again.settle()
        assert again.sender.requests == [], "the held key waits for its time, and A-002 waits behind it"
        await again.dispatcher.submit([event("A", 3), event("D", 0)])
        await again.settle()
        assert again.sender.delivered == ["D-000"]
        await again.advance(20.0)
        assert again.sender.batches()[1] == ["A-000", "A-001"], "the frozen batch, resent as it was"
        assert per_entity(again.sender.delivered)["A"] == ["A-000", "A-001", "A-002", "A-003"]
        ids = {r.headers["X-Webhook-Delivery-Id"] for r in [*first.sender.requests, *again.sender.requests]
               if r.body.count(b"A-000")}  # fmt: skip
        assert len(ids) == 1
        attempts = [r.attempt for r in await again.store.attempts(KEY, AttemptQuery()) if "A-000" in r.event_ids]
        assert attempts == [1, 2, 3], "the attempt count went on where it was"
    finally:
        await again.graph.close()


async def test_concurrent_completions_never_write_back_a_stale_hold(rig: Rig) -> None:
    """A fails while many other keys complete around it: the stored state keeps A's hold, then loses it on A's
    delivery and not before."""
    rig.sender.failing = {"A": 1}
    await rig.dispatcher.register(target(in_flight=16))
    await rig.dispatcher.submit([event("A", 0), *interleaved("BCDEFGHIJKLMNOP", 3)])
    await rig.settle()
    retry = await rig.retry()
    assert [h.key for h in retry.holds] == ["A"] and retry.held_qids == retry.holds[0].qids
    await rig.advance(10.0)
    assert (await rig.retry()) == RetryState() and len(rig.sender.delivered) == 46


async def test_changing_the_ordering_keeps_every_event_and_its_order(rig: Rig) -> None:
    rig.sender.failing = {"A": 1}
    await rig.dispatcher.register(target("webhook"))
    await rig.dispatcher.submit([event("A", 0), event("B", 0), event("A", 1)])
    await rig.settle()
    assert rig.sender.delivered == [] and rig.snapshot().state is WebhookState.AWAITING_RETRY
    await rig.dispatcher.register(target("entity"))
    await rig.settle()
    assert isinstance(rig.dispatcher.worker(KEY), KeyedLaneWorker)
    assert per_entity(rig.sender.delivered) == {"A": ["A-000", "A-001"], "B": ["B-000"]}
    await rig.dispatcher.submit([event("C", 0)])
    await rig.dispatcher.register(target("webhook"))
    await rig.settle()
    assert rig.sender.delivered[-1] == "C-000" and rig.snapshot().pending == 0


async def test_a_held_batch_beyond_the_first_page_is_found_after_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a restart the queue is read a page at a time; a hold whose events are not in the first page still goes
    out as the frozen batch it was, when it is due, and its entity's later events wait behind it."""
    monkeypatch.setattr("webhook_operator.delivery.queue.PAGE", 3)
    rig = Rig()
    await rig.graph.open()
    try:
        events = [event("A", n) for n in range(5)] + [event("B", 0), event("B", 1)]
        await rig.store.enqueue([RoutedEvent(e.id, encode_event(e), [KEY]) for e in events])  # qids 1..7
        hold = KeyHold("B", (6,), 1, rig.clock.now + 10, rig.clock.now, 503, "HTTP 503")
        held = RetryState(held_qids=(6,), attempts=1, next_attempt_at=hold.next_attempt_at, holds=(hold,))
        await rig.store.save_retry_state(KEY, held)
        await rig.dispatcher.register(target(in_flight=2))
        await rig.settle()
        assert rig.sender.delivered == [f"A-{n:03d}" for n in range(5)], "B waits for its time, B-001 behind it"
        await rig.advance(10.0)
        assert rig.sender.delivered[5:] == ["B-000", "B-001"]
        line = [r for r in await rig.store.attempts(KEY, AttemptQuery()) if r.event_ids == ["B-000"]]
        assert [r.attempt for r in line] == [2], "the schedule went on where it was"
        assert (await rig.retry()) == RetryState() and rig.snapshot().pending == 0
    finally:
        await rig.graph.close()
