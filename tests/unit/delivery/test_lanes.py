"""Lanes, workers and operations on the in-memory store, a scripted sender and a hand-driven clock: no disk, no
sockets, no sleeps waiting for a retry. What the real-receiver tests (test_dispatcher.py) show end to end, shown
here step by step, with the state machine's every visible consequence: what was sent, what the store holds, what
status says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookSpec, WebhookState
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.delivery.sender import Outcome, OutcomeKind
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.graph import Graph, NullStatus, build_graph
from webhook_operator.store.base import AttemptOutcome, AttemptQuery, RetryState, StoreUnavailable
from webhook_operator.store.memory import MemoryStore

from .fakes import Clock, ScriptedSender

KEY = "ns/hook"
POLICY = RetryPolicy((10.0, 20.0))
SECRET = "s3cret-value-1"


def fail(status: int = 500, **kw: Any) -> Outcome:
    return Outcome(OutcomeKind.RETRYABLE, status, 1.0, f"HTTP {status}", **kw)


class States(NullStatus):
    def __init__(self) -> None:
        self.seen: list[WebhookState] = []

    def webhook_changed(self, snapshot: Any) -> None:
        if not self.seen or self.seen[-1] is not snapshot.state:
            self.seen.append(snapshot.state)


def event(i: int) -> ChangeEvent:
    return ChangeEvent.model_validate({
        "id": f"ev-{i:03d}", "eventType": "entityCreated", "entityType": "table", "entityId": f"e-{i}",
        "timestamp": 1_700_000_000_000 + i, "entity": {"id": f"e-{i}", "name": f"t{i}"},
    })  # fmt: skip


def target(batch: int = 1, **cfg: Any) -> WebhookTarget:
    spec = WebhookSpec.model_validate({
        "webhookType": "Generic", "batchSize": batch,
        "eventFilters": [{"eventType": "entityCreated", "entities": ["table"]}],
        "webhookConfig": {"endpoint": "http://receiver.test/hook", "timeout": 5, **cfg},
    })  # fmt: skip
    return WebhookTarget(key=KEY, spec=spec, secrets=(SECRET,))


class Rig:
    def __init__(self, store: MemoryStore | None = None) -> None:
        self.clock = Clock()
        self.store = store or MemoryStore(clock=self.clock)
        self.sender = ScriptedSender()
        self.states = States()
        self.graph: Graph = build_graph(store=self.store, sender=self.sender, status=self.states, clock=self.clock,
                                        retry=POLICY)  # fmt: skip

    async def settle(self) -> None:
        await self.graph.dispatcher.settled(within=5)

    def snapshot(self) -> Any:
        return self.graph.dispatcher.snapshot(KEY)

    async def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.graph.dispatcher.worker(KEY).kick()
        await self.settle()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    await r.graph.open()
    yield r
    await r.graph.close()


async def test_batches_go_out_in_order_and_leave_nothing_queued(rig: Rig) -> None:
    await rig.graph.dispatcher.register(target(batch=2))
    await rig.graph.dispatcher.submit([event(i) for i in range(5)])
    await rig.settle()
    assert rig.sender.batches() == [["ev-000", "ev-001"], ["ev-002", "ev-003"], ["ev-004"]]
    state = await rig.store.lane_state(KEY)
    assert state.pending == 0 and state.counters.delivered == 5 and state.retry == RetryState()
    assert rig.snapshot().delivered == 5 and rig.snapshot().state is WebhookState.ACTIVE


async def test_a_held_batch_is_frozen_and_retried_on_the_schedule(rig: Rig) -> None:
    rig.sender.script = [fail(503), fail(502)]
    await rig.graph.dispatcher.register(target(batch=2))
    await rig.graph.dispatcher.submit([event(1)])
    await rig.settle()
    snap = rig.snapshot()
    assert snap.state is WebhookState.AWAITING_RETRY and snap.next_attempt_at == rig.clock.now + 10.0
    await rig.graph.dispatcher.submit([event(2), event(3)])  # arrive while held: they wait, the batch stays
    await rig.settle()
    assert rig.sender.batches() == [["ev-001"]]
    await rig.advance(9.0)
    assert len(rig.sender.requests) == 1, "not before the schedule says"
    await rig.advance(1.0)
    assert rig.snapshot().next_attempt_at == rig.clock.now + 20.0, "the second step, not the first again"
    await rig.advance(20.0)
    assert rig.sender.batches() == [["ev-001"], ["ev-001"], ["ev-001"], ["ev-002", "ev-003"]]
    ids = {r.headers["X-Webhook-Delivery-Id"] for r in rig.sender.requests[:3]}
    assert len(ids) == 1, "every attempt of one batch carries the same delivery id"
    assert rig.states.seen == [WebhookState.ACTIVE, WebhookState.AWAITING_RETRY, WebhookState.ACTIVE]
    log = await rig.store.attempts(KEY, AttemptQuery())
    assert [(r.outcome, r.attempt) for r in log] == [
        (AttemptOutcome.FAILED, 1), (AttemptOutcome.FAILED, 2), (AttemptOutcome.DELIVERED, 3),
        (AttemptOutcome.DELIVERED, 1),
    ]  # fmt: skip


async def test_retry_limit_pauses_and_survives_a_restart(rig: Rig) -> None:
    rig.sender.default = fail(500)
    await rig.graph.dispatcher.register(target())
    await rig.graph.dispatcher.submit([event(1), event(2)])
    await rig.settle()
    await rig.advance(10.0)
    await rig.advance(20.0)
    assert rig.snapshot().state is WebhookState.RETRY_LIMIT_REACHED and len(rig.sender.requests) == 3
    await rig.advance(3600.0)
    assert len(rig.sender.requests) == 3, "a paused lane never retries on its own"
    persisted = (await rig.store.lane_state(KEY)).retry
    await rig.graph.dispatcher.stop()
    await rig.store.close()

    again = Rig(rig.store)  # a new process on the same store
    await again.graph.open()
    try:
        snap = await again.graph.dispatcher.register(target())
        assert snap.state is WebhookState.RETRY_LIMIT_REACHED and snap.pending == 2
        assert (await again.store.lane_state(KEY)).retry == persisted
        assert await again.graph.operations.resume(KEY, "dana")
        await again.settle()
        assert again.sender.batches() == [["ev-001"], ["ev-002"]]
        assert again.snapshot().state is WebhookState.ACTIVE
    finally:
        await again.graph.close()


async def test_skip_dead_letters_the_held_batch_and_the_next_one_goes(rig: Rig) -> None:
    rig.sender.script = [fail(500)]
    await rig.graph.dispatcher.register(target())
    await rig.graph.dispatcher.submit([event(1), event(2)])
    await rig.settle()
    assert await rig.graph.operations.skip(KEY, "erin") == ["ev-001"]
    await rig.settle()
    assert rig.sender.batches() == [["ev-001"], ["ev-002"]]
    assert [d.event_id for d in rig.store.dead_letters] == ["ev-001"]
    assert (await rig.store.lane_state(KEY)).retry.held_qids == ()


async def test_a_completion_that_cannot_be_written_is_written_again_and_order_holds(rig: Rig) -> None:
    await rig.graph.dispatcher.register(target())
    rig.store.fail_writes = True
    with pytest.raises(StoreUnavailable):
        await rig.graph.dispatcher.submit([event(1)])  # nothing acknowledged while the store is down
    rig.store.fail_writes = False
    rig.sender.on_send = lambda n: setattr(rig.store, "fail_writes", True) if n == 1 else None  # 1st completion fails
    await rig.graph.dispatcher.submit([event(1), event(2)])
    deadline = time.monotonic() + 5
    while len(rig.sender.requests) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert (await rig.store.lane_state(KEY)).pending == 2, "nothing recorded while the store is down"
    rig.store.fail_writes = False
    await rig.settle()
    assert rig.sender.batches() == [["ev-001"], ["ev-002"]], "no resend, no reorder"
    state = await rig.store.lane_state(KEY)
    assert state.pending == 0 and state.counters.delivered == 2
    assert [r.event_ids for r in await rig.store.attempts(KEY, AttemptQuery())] == [["ev-001"], ["ev-002"]]


async def test_the_test_operation_and_a_delivery_mask_alike(rig: Rig) -> None:
    echo = f'{{"echo": "{SECRET}", "Authorization": "Bearer tok-123"}}'
    failing = Outcome(OutcomeKind.RETRYABLE, 401, 1.0, f"HTTP 401 {SECRET}", response_body=echo)
    rig.sender.script = [failing, failing]
    await rig.graph.dispatcher.register(target())
    result = await rig.graph.operations.test(KEY, "frank")
    await rig.graph.dispatcher.submit([event(1)])
    await rig.settle()
    test_line, lane_line = await rig.store.attempts(KEY, AttemptQuery())
    assert (test_line.outcome, lane_line.outcome) == (AttemptOutcome.TEST, AttemptOutcome.FAILED)
    for line in (test_line, lane_line):
        assert SECRET not in (line.error or "") and SECRET not in line.response_body
        assert "tok-123" not in line.response_body and "***" in line.response_body
    assert (test_line.error, test_line.response_body) == (lane_line.error, lane_line.response_body)
    assert result.error == test_line.error and SECRET not in str(rig.snapshot())


async def test_a_configuration_error_fails_without_sending(rig: Rig) -> None:
    broken = WebhookTarget(key=KEY, spec=target().spec, config_error="Secret ns/s not found")
    snap = await rig.graph.dispatcher.register(broken)
    assert snap.state is WebhookState.FAILED
    result = await rig.graph.operations.test(KEY, "gail")
    assert not result.ok and "Secret ns/s not found" in (result.error or "")
    await rig.graph.dispatcher.submit([event(1)])
    await rig.settle()
    assert rig.sender.requests == [] and rig.snapshot().pending == 1, "queued, not sent, not lost"
    await rig.graph.dispatcher.register(target())
    await rig.settle()
    assert rig.sender.batches() == [["ev-001"]]
