"""Edges of parallel delivery (ordering entity/none) that meet the rest of the engine: the fallback taking over every
held key's batch, an event that cannot be decoded, and the queue limits never touching a held or in-flight batch."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from webhook_operator.api.webhook import WebhookSpec, WebhookState
from webhook_operator.delivery.dispatcher import encode_event
from webhook_operator.delivery.sender import Outcome, OutcomeKind, Request
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.graph import build_graph
from webhook_operator.store.base import AttemptOutcome, AttemptQuery, RetryState, RoutedEvent
from webhook_operator.store.memory import MemoryStore

from .fakes import Clock, ScriptedSender, advance
from .test_ordering import KEY, POLICY, event, per_entity

BACKUP = "ns/backup"
DOWN = Outcome(OutcomeKind.RETRYABLE, 503, 1.0, "HTTP 503")


def spec(url: str, event_type: str = "entityCreated", **extra: Any) -> WebhookSpec:
    return WebhookSpec.model_validate({
        "webhookType": "Generic", "batchSize": 1, "eventFilters": [{"eventType": event_type, "entities": ["table"]}],
        "webhookConfig": {"endpoint": url, "timeout": 5}, **extra,
    })  # fmt: skip


class ByUrl(ScriptedSender):
    """Fails requests to ``down`` URLs that carry an event of an entity in ``failing`` (all entities if empty)."""

    def __init__(self) -> None:
        super().__init__()
        self.down: set[str] = set()
        self.failing: set[str] = set()
        self.delivered: dict[str, list[str]] = {}

    async def send(self, request: Request) -> Outcome:
        self.requests.append(request)
        body = json.loads(request.body)
        ids = [e["id"] for e in body["data"]] if "data" in body else [body["id"]]
        if request.url in self.down and (not self.failing or {i.split("-")[0] for i in ids} & self.failing):
            return DOWN
        self.delivered.setdefault(request.url, []).extend(ids)
        return self.default


class Rig:
    def __init__(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(clock=self.clock)
        self.sender = ByUrl()
        self.graph = build_graph(store=self.store, sender=self.sender, clock=self.clock, retry=POLICY)
        self.d = self.graph.dispatcher

    async def settle(self) -> None:
        await self.d.settled(within=5)

    async def advance(self, seconds: float) -> None:
        await advance(self.clock, self.d, seconds)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    await r.graph.open()
    yield r
    await r.graph.close()


async def test_the_fallback_takes_every_held_batch_first_then_the_rest(rig: Rig) -> None:
    hook, backup = "http://hook.test/h", "http://backup.test/h"
    rig.sender.down, rig.sender.failing = {hook}, {"A", "B"}
    await rig.d.register(WebhookTarget(key=BACKUP, spec=spec(backup, "entitySoftDeleted", acceptFrom=["*"])))
    await rig.d.register(WebhookTarget(key=KEY, spec=spec(hook, delivery={"ordering": "entity"},
                                                          fallback={"name": "backup"})))  # fmt: skip
    await rig.d.submit([event("A", 0), event("B", 0), event("C", 0), event("A", 1), event("B", 1)])
    await rig.settle()
    assert rig.sender.delivered[hook] == ["C-000"]
    await rig.advance(10.0)
    await rig.advance(20.0)  # A and B reach the end of their schedule: paused, the fallback takes over
    snap = rig.d.snapshot(KEY)
    assert snap.state is WebhookState.RETRY_LIMIT_REACHED and snap.fallback_to == BACKUP and snap.pending == 0
    assert rig.sender.delivered[backup] == ["A-000", "B-000", "A-001", "B-001"], "held batches first, in qid order"
    retry = (await rig.store.lane_state(KEY)).retry
    assert retry.holds == () and retry.held_qids == () and retry.fallback == BACKUP
    await rig.d.submit([event("D", 0)])
    await rig.settle()
    assert rig.sender.delivered[backup][-1] == "D-000", "new events go to the fallback while it is active"


async def test_an_event_that_cannot_be_decoded_is_dead_lettered_alone(rig: Rig) -> None:
    await rig.d.register(WebhookTarget(key=KEY, spec=spec("http://hook.test/h", delivery={"ordering": "entity"})))
    broken = RoutedEvent("broken-1", b'{"id": "broken-1", "eventType": "nope"}', [KEY])
    good = [RoutedEvent(e.id, encode_event(e), [KEY]) for e in (event("A", 0), event("A", 1))]
    result = await rig.store.enqueue([good[0], broken, good[1]])
    rig.d.worker(KEY).append([e for entries in result.queued.values() for e in entries])
    await rig.settle()
    assert rig.sender.delivered["http://hook.test/h"] == ["A-000", "A-001"]
    assert [d.event_id for d in rig.store.dead_letters] == ["broken-1"]
    skipped = await rig.store.attempts(KEY, AttemptQuery(outcome=AttemptOutcome.SKIPPED))
    assert len(skipped) == 1 and "could not be decoded" in skipped[0].note
    assert (await rig.store.lane_state(KEY)).pending == 0


async def test_the_queue_limits_never_move_a_held_batch(rig: Rig) -> None:
    hook = "http://hook.test/h"
    rig.sender.down, rig.sender.failing = {hook}, {"A"}
    await rig.d.register(WebhookTarget(key=KEY, spec=spec(hook, delivery={"ordering": "entity", "maxQueued": 2})))
    await rig.d.submit([event("A", 0)])
    await rig.settle()
    await rig.d.submit([event("A", n) for n in range(1, 5)])
    await rig.settle()
    state = await rig.store.lane_state(KEY)
    assert state.retry.held_qids == (1,) and state.pending <= 3, "the held batch stays, the oldest others go"
    assert "A-000" not in [d.event_id for d in rig.store.dead_letters]
    rig.sender.down = set()
    await rig.advance(10.0)
    kept = per_entity(rig.sender.delivered[hook])["A"]
    assert kept[0] == "A-000" and kept == sorted(kept)
    assert (await rig.store.lane_state(KEY)).retry == RetryState()


async def test_lowering_max_in_flight_while_keys_are_held_never_sends_more_than_the_new_cap() -> None:
    """Found by review: every due held batch used to start at once, whatever the (lowered) cap."""
    from .test_ordering import Rig, interleaved, target

    rig = Rig()
    await rig.graph.open()
    try:
        rig.sender.failing = dict.fromkeys("ABCDEF", 1)
        await rig.dispatcher.register(target(in_flight=8))
        await rig.dispatcher.submit(interleaved("ABCDEF", 1))
        await rig.settle()
        assert len((await rig.retry()).holds) == 6
        await rig.dispatcher.register(target(in_flight=1))
        rig.sender.peak = 0
        await rig.advance(10.0)
        assert rig.sender.peak == 1
    finally:
        await rig.graph.close()
