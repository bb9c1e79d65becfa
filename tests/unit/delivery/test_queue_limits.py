"""Queue limits (issue 13, finding 4): a webhook whose receiver is down, or that is paused, cannot queue without
bound. Over its cap (``maxQueued``) or past its age limit (``maxQueuedAge``) the oldest queued events move to the
dead letters — kept for the retention period, logged, redeliverable — never the held batch, which is still being
retried and must go first. Status learns how many and since when, so the owner sees it.

Before: ``Lane.accepting`` queued for a failed or paused webhook forever and nothing ever removed a queued event."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from webhook_operator.api.webhook import WebhookSpec, WebhookState
from webhook_operator.delivery.dispatcher import QueueLimits
from webhook_operator.delivery.sender import Outcome, OutcomeKind
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.graph import build_graph
from webhook_operator.store.base import AttemptOutcome, AttemptQuery

from .test_lanes import KEY, POLICY, SECRET, Rig, event, fail

OK = Outcome(OutcomeKind.SUCCESS, 200, 1.0)


def target(batch: int = 1, **delivery: Any) -> WebhookTarget:
    spec = WebhookSpec.model_validate({
        "webhookType": "Generic", "batchSize": batch,
        "eventFilters": [{"eventType": "entityCreated", "entities": ["table"]}],
        "webhookConfig": {"endpoint": "http://receiver.test/hook", "timeout": 5},
        **({"delivery": delivery} if delivery else {}),
    })  # fmt: skip
    return WebhookTarget(key=KEY, spec=spec, secrets=(SECRET,))


class LimitedRig(Rig):
    def __init__(self, limits: QueueLimits) -> None:
        super().__init__()
        self.graph = build_graph(store=self.store, sender=self.sender, status=self.states, clock=self.clock,
                                 retry=POLICY, queue_limits=limits)  # fmt: skip


async def dead_letter_ids(rig: Rig) -> list[str]:
    return [d.event_id for d in rig.store.dead_letters]


async def test_over_its_cap_the_oldest_move_to_the_dead_letters_never_the_held_batch() -> None:
    rig = LimitedRig(QueueLimits())
    await rig.graph.open()
    try:
        d = rig.graph.dispatcher
        rig.sender.default = fail(500)
        await d.register(target(batch=2, maxQueued=3))
        await d.submit([event(1)])
        await rig.settle()  # ev-001 is the held batch, awaiting its retry
        for i in range(2, 9):
            await d.submit([event(i)])
            await rig.settle()
        assert await dead_letter_ids(rig) == ["ev-002", "ev-003", "ev-004", "ev-005", "ev-006"]
        state = await rig.store.lane_state(KEY)
        assert state.pending == 3 and state.retry.held_qids, "the held batch and the newest two remain"
        snap = rig.snapshot()
        assert (snap.pending, snap.dead_letters, snap.overflowed) == (3, 5, 5)
        assert snap.dead_lettered_since == rig.clock.now and snap.state is WebhookState.AWAITING_RETRY
        assert "maxQueued 3" in (snap.dead_letter_reason or ""), snap.dead_letter_reason
        log = await rig.store.attempts(KEY, AttemptQuery(outcome=AttemptOutcome.SKIPPED))
        assert [i for r in log for i in r.event_ids] == ["ev-002", "ev-003", "ev-004", "ev-005", "ev-006"]
        assert all("maxQueued 3" in r.note and "dead letters" in r.note for r in log), [r.note for r in log]
        # the receiver comes back: the held batch first, then what was kept, in order
        rig.sender.default = OK
        await rig.advance(10.0)
        assert rig.sender.batches()[-2:] == [["ev-001"], ["ev-007", "ev-008"]]
        assert (await rig.store.lane_state(KEY)).pending == 0
    finally:
        await rig.graph.close()


async def test_the_operators_cap_applies_and_a_webhook_can_only_lower_it() -> None:
    rig = LimitedRig(QueueLimits(max_queued=4))
    await rig.graph.open()
    try:
        d = rig.graph.dispatcher
        rig.sender.default = fail(503)
        await d.register(target(maxQueued=1000))  # asks for more than the operator allows: gets the operator's cap
        await d.submit([event(0)])
        await rig.settle()
        await d.submit([event(i) for i in range(1, 10)])
        await rig.settle()
        assert await dead_letter_ids(rig) == [f"ev-00{i}" for i in range(1, 7)]
        assert rig.snapshot().pending == 4 and "maxQueued 4" in (rig.snapshot().dead_letter_reason or "")
        await d.register(target(maxQueued=2))  # lowering it takes effect at once
        await rig.settle()
        assert rig.snapshot().pending == 2 and rig.snapshot().dead_letters == 8
    finally:
        await rig.graph.close()


async def test_the_sweep_expires_old_events_of_a_paused_webhook() -> None:
    rig = LimitedRig(QueueLimits(max_age=3600.0))
    await rig.graph.open()
    try:
        d = rig.graph.dispatcher
        rig.sender.default = fail(500)
        await d.register(target())
        await d.submit([event(1), event(2), event(3)])
        await rig.settle()
        await rig.advance(10.0)
        await rig.advance(20.0)
        assert rig.snapshot().state is WebhookState.RETRY_LIMIT_REACHED, "paused: its worker is not running"
        rig.clock.now += 3000.0
        await d.submit([event(4)])
        await rig.settle()
        assert await d.sweep() == 0, "nothing is an hour old yet"
        rig.clock.now += 700.0
        assert await d.sweep() == 2
        assert await dead_letter_ids(rig) == ["ev-002", "ev-003"], "ev-001 is held; ev-004 is young"
        snap = rig.snapshot()
        assert (snap.pending, snap.dead_letters, snap.overflowed) == (2, 2, 2)
        assert "maxQueuedAge 1h" in (snap.dead_letter_reason or ""), snap.dead_letter_reason
        assert snap.state is WebhookState.RETRY_LIMIT_REACHED
    finally:
        await rig.graph.close()


async def test_dead_letter_counts_are_read_back_after_a_restart_and_after_retention() -> None:
    rig = LimitedRig(QueueLimits(max_queued=2))
    await rig.graph.open()
    d = rig.graph.dispatcher
    rig.sender.default = fail(500)
    await d.register(target())
    await d.submit([event(1)])
    await rig.settle()
    await d.submit([event(i) for i in range(2, 6)])
    await rig.settle()
    since = rig.clock.now
    assert rig.snapshot().dead_letters == 3
    await d.stop()
    await rig.store.close()
    again = LimitedRig(QueueLimits(max_queued=2))
    again.store = rig.store
    again.graph = build_graph(store=rig.store, sender=again.sender, status=again.states, clock=again.clock,
                              retry=POLICY, queue_limits=QueueLimits(max_queued=2))  # fmt: skip
    await again.graph.open()
    try:
        await again.graph.dispatcher.register(target())
        snap = again.snapshot()
        assert (snap.dead_letters, snap.dead_lettered_since, snap.overflowed) == (3, since, 0)
        await again.store.prune(since + 1)  # retention: the dead letters age out
        await again.graph.dispatcher.sweep()
        assert again.snapshot().dead_letters == 0 and again.snapshot().dead_lettered_since is None
    finally:
        await again.graph.close()


@pytest.mark.parametrize("bad", [{"maxQueued": 0}, {"maxQueuedAge": "soon"}, {"maxQueuedAge": "0s"}])
def test_the_spec_refuses_limits_that_make_no_sense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="delivery"):
        target(**bad)


async def test_a_webhook_with_a_configuration_error_is_bounded_too() -> None:
    """The issue's case: a catch-all Webhook whose Secret is missing queues everything and sends nothing."""
    rig = LimitedRig(QueueLimits(max_queued=10))
    await rig.graph.open()
    try:
        d = rig.graph.dispatcher
        broken = dataclasses.replace(target(), config_error="Secret ns/hmac not found")
        await d.register(broken)
        for start in range(0, 50, 10):
            await d.submit([event(i) for i in range(start, start + 10)])
            await rig.settle()
        assert rig.sender.requests == [] and rig.snapshot().state is WebhookState.FAILED
        assert rig.snapshot().pending == 10 and rig.snapshot().dead_letters == 40
        assert (await rig.store.lane_state(KEY)).pending == 10
        assert [e.event_id for e in await rig.store.pending(KEY)] == [f"ev-{i:03d}" for i in range(40, 50)]
    finally:
        await rig.graph.close()
