"""Poison events (issue 13, finding 5): an event that cannot be decoded at delivery time — stored before the intake
limited nesting, or broken any other way — is dead-lettered for that webhook with the reason, and the lane carries
on with the rest in order. Before, the re-parse raised on every try and the lane retried every second forever,
logging a traceback each time."""

from __future__ import annotations

import asyncio
import logging

import pytest

from webhook_operator.store.base import AttemptOutcome, AttemptQuery, RoutedEvent

from .test_lanes import KEY, Rig, event, target


def deep_body(levels: int) -> bytes:
    entity = '{"a":' * levels + "1" + "}" * levels
    return (
        '{"id":"ev-bad","eventType":"entityCreated","entityType":"table","entityId":"e-bad",'
        f'"timestamp":1700000000000,"entity":{entity}}}'
    ).encode()


async def test_an_undecodable_stored_event_is_dead_lettered_and_the_rest_go_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig()
    await rig.graph.open()
    try:
        # stored before the limit existed: on disk, never parsed by this process
        good = [event(i) for i in (1, 2, 3)]
        bodies = [e.model_dump_json(by_alias=True, exclude_none=True).encode() for e in good]
        await rig.store.enqueue([
            RoutedEvent("ev-001", bodies[0], [KEY]), RoutedEvent("ev-bad", deep_body(300), [KEY]),
            RoutedEvent("ev-002", bodies[1], [KEY]), RoutedEvent("ev-003", bodies[2], [KEY]),
        ])  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="webhook_operator.delivery.worker"):
            await rig.graph.dispatcher.register(target(batch=2))
            await asyncio.wait_for(rig.settle(), 5)
            await rig.advance(3600.0)  # nothing is waiting for a retry
        assert rig.sender.batches() == [["ev-001", "ev-002"], ["ev-003"]], "the rest in order, batched as usual"
        assert [d.event_id for d in rig.store.dead_letters] == ["ev-bad"]
        state = await rig.store.lane_state(KEY)
        assert state.pending == 0 and state.counters.delivered == 3 and not state.retry.held_qids
        log = await rig.store.attempts(KEY, AttemptQuery(outcome=AttemptOutcome.SKIPPED))
        assert [r.event_ids for r in log] == [["ev-bad"]]
        assert log[0].note.startswith("event could not be decoded: ") and log[0].note.endswith("; dead-lettered")
        assert "recursion limit" in log[0].note, log[0].note
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "ev-bad" in warnings[0].getMessage(), warnings
        assert warnings[0].exc_info is None, "a line, not a traceback"
        assert rig.snapshot().pending == 0
    finally:
        await rig.graph.close()
