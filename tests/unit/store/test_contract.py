"""The store contract: every backend in ``_backends.BACKENDS`` must pass every test here, so that lane tests run
against the in-memory store mean what they say about SQLite (and later PostgreSQL)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from webhook_operator.store.base import (
    AttemptOutcome,
    AttemptQuery,
    AttemptRecord,
    Counters,
    LaneState,
    RetryState,
    Store,
    StoreUnavailable,
)

from ._backends import T0, Harness, ev, record

DELIVERED, FAILED, SKIPPED = AttemptOutcome.DELIVERED, AttemptOutcome.FAILED, AttemptOutcome.SKIPPED
REQUEUED = AttemptOutcome.REDELIVERY_QUEUED


def ids(events: Any) -> list[str]:
    return [e.event_id for e in events]


# -- intake --------------------------------------------------------------------------------------------------


async def test_enqueue_queues_each_event_for_each_of_its_webhooks(h: Harness) -> None:
    s = h.store
    result = await s.enqueue([ev(1, "ns/a", "ns/b"), ev(2, "ns/a"), ev(3)])
    assert (result.accepted, result.duplicates) == (3, 0)
    seq1, seq2, seq3 = result.seqs
    assert seq1 is not None and seq2 is not None and seq3 is not None and seq1 < seq2 < seq3
    assert result.queued.keys() == {"ns/a", "ns/b"}
    a, b = result.queued["ns/a"], result.queued["ns/b"]
    assert [(e.event_id, e.seq, e.body, e.received_at) for e in a] == [
        ("id-1", seq1, b'{"n":1}', T0), ("id-2", seq2, b'{"n":2}', T0)]  # fmt: skip
    assert b[0].seq == a[0].seq and b[0].qid != a[0].qid  # one stored event, one queue entry per webhook
    assert await s.pending("ns/a") == a and await s.pending("ns/b") == b and await s.pending("ns/c") == []
    assert ids(await s.events_by_id(["id-3"])) == ["id-3"]  # stored even though routed nowhere
    assert await s.webhook_keys() == ["ns/a", "ns/b"]


async def test_duplicate_ids_are_accepted_once_within_and_across_calls(h: Harness) -> None:
    s = h.store
    first = await s.enqueue([ev(1, "ns/a")])
    again = await s.enqueue([ev(1, "ns/a", "ns/b"), ev(2, "ns/a"), ev(2, "ns/a", body=b"second copy")])
    assert first.seqs[0] is not None
    assert again.seqs[0] is None and again.seqs[1] is not None and again.seqs[2] is None
    assert (again.accepted, again.duplicates) == (1, 2)
    assert ids(again.queued["ns/a"]) == ["id-2"] and "ns/b" not in again.queued
    assert ids(await s.pending("ns/a")) == ["id-1", "id-2"]
    assert [e.body for e in await s.events_by_id(["id-2"])] == [b'{"n":2}']  # the first copy is the one kept
    assert (await s.lane_state("ns/b")).pending == 0


async def test_qids_order_queues_across_webhooks_calls_and_concurrent_callers(h: Harness) -> None:
    s = h.store
    one = await s.enqueue([ev(1, "ns/a"), ev(2, "ns/b")])
    two = await s.enqueue([ev(3, "ns/b", "ns/a")])
    qids = [one.queued["ns/a"][0].qid, one.queued["ns/b"][0].qid, two.queued["ns/b"][0].qid, two.queued["ns/a"][0].qid]
    assert qids == sorted(set(qids))
    results = await asyncio.gather(*(s.enqueue([ev(i, "ns/c")]) for i in range(10, 60)))
    assert all(r.accepted == 1 for r in results)
    pending = await s.pending("ns/c")
    assert ids(pending) == [f"id-{i}" for i in range(10, 60)] and pending[0].qid > qids[-1]
    assert [e.qid for e in pending] == sorted({e.qid for e in pending})


# -- lanes ---------------------------------------------------------------------------------------------------


async def test_pending_pages_with_a_cursor_and_a_limit(h: Harness) -> None:
    s = h.store
    queued = (await s.enqueue([ev(i, "ns/a", "ns/b") for i in range(7)])).queued["ns/a"]
    pages: list[list[str]] = []
    after = 0
    while page := await s.pending("ns/a", after_qid=after, limit=3):
        pages.append(ids(page))
        after = page[-1].qid
    assert pages == [["id-0", "id-1", "id-2"], ["id-3", "id-4", "id-5"], ["id-6"]]
    assert await s.pending("ns/a", limit=0) == [] and await s.pending("ns/a", after_qid=queued[-1].qid) == []
    assert await s.pending("ns/a") == queued


async def test_lane_state_of_an_unknown_webhook_is_empty(h: Harness) -> None:
    assert await h.store.lane_state("ns/nobody") == LaneState(RetryState(), Counters(), 0)


async def test_lane_state_hands_the_lane_its_own_counters(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a")])).queued["ns/a"]
    await s.complete("ns/a", [q[0].qid], record("ns/a"))
    mine = (await s.lane_state("ns/a")).counters
    mine.delivered += 100
    assert (await s.lane_state("ns/a")).counters.delivered == 1


async def test_complete_dequeues_logs_counts_and_clears_retry_state(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a"), ev(3, "ns/a")])).queued["ns/a"]
    held = RetryState(held_qids=(q[0].qid, q[1].qid), attempts=1, next_attempt_at=T0 + 5, last_status_code=502)
    await s.fail("ns/a", record("ns/a", FAILED, "id-1", "id-2"), held)
    await s.complete("ns/a", [q[0].qid, q[1].qid], record("ns/a", DELIVERED, "id-1", "id-2", started_at=T0 + 5,
                                                         duration_ms=250.0))  # fmt: skip
    assert await s.lane_state("ns/a") == LaneState(RetryState(), Counters(2, 1, T0 + 5.25), 1)
    assert await s.pending("ns/a") == [q[2]]
    await s.complete("ns/a", [q[2].qid], record("ns/a", DELIVERED, "id-3", started_at=T0 + 9, duration_ms=0.0))
    assert await s.lane_state("ns/a") == LaneState(RetryState(), Counters(3, 1, T0 + 9), 0)
    assert [r.outcome for r in await s.attempts("ns/a", AttemptQuery())] == [FAILED, DELIVERED, DELIVERED]


async def test_fail_persists_retry_state_and_counts_each_failed_attempt(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a")])).queued["ns/a"]
    first = RetryState((q[0].qid, q[1].qid), 1, T0 + 1, None, T0, 503, "HTTP 503")
    await s.fail("ns/a", record("ns/a", FAILED, "id-1", "id-2", status_code=503), first)
    assert await s.lane_state("ns/a") == LaneState(first, Counters(0, 1, None), 2)
    second = replace(first, attempts=2, next_attempt_at=None, paused="retryLimitReached", last_reason="timeout")
    await s.fail("ns/a", record("ns/a", FAILED, "id-1", "id-2"), second)
    state = await s.lane_state("ns/a")
    assert state == LaneState(second, Counters(0, 2, None), 2) and isinstance(state.retry.held_qids, tuple)
    assert await s.pending("ns/a") == q  # a failure dequeues nothing
    assert len(await s.attempts("ns/a", AttemptQuery(outcome=FAILED))) == 2


async def test_save_retry_state_neither_logs_nor_counts(h: Harness) -> None:
    s = h.store
    paused = RetryState(held_qids=(7, 8), attempts=4, paused="failed", last_failed_at=T0, last_reason="HTTP 410")
    await s.save_retry_state("ns/a", paused)
    assert await s.lane_state("ns/a") == LaneState(paused, Counters(), 0)
    assert await s.attempts("ns/a", AttemptQuery()) == [] and await s.webhook_keys() == ["ns/a"]
    await s.save_retry_state("ns/a", RetryState())
    assert (await s.lane_state("ns/a")).retry == RetryState()


async def test_skip_dead_letters_the_held_batch_with_a_log_line(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a"), ev(3, "ns/a")])).queued["ns/a"]
    await s.fail("ns/a", record("ns/a", FAILED), RetryState(held_qids=(q[0].qid, q[1].qid), paused="failed"))
    await s.skip("ns/a", [q[0].qid, q[1].qid], record("ns/a", SKIPPED, "id-1", "id-2", note="skipped by alice"))
    assert await s.pending("ns/a") == [q[2]]
    assert await s.lane_state("ns/a") == LaneState(RetryState(), Counters(0, 1, None), 1, 2, T0)  # not a delivery
    [line] = await s.attempts("ns/a", AttemptQuery(outcome=SKIPPED))
    assert (line.note, list(line.event_ids)) == ("skipped by alice", ["id-1", "id-2"])
    assert ids(await s.delivered_events("ns/a", None, None, 10)) == ["id-1", "id-2"]


async def test_requeue_queues_behind_everything_in_the_callers_order(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a"), ev(3, "ns/a")])).queued["ns/a"]
    await s.complete("ns/a", [q[0].qid, q[1].qid], record("ns/a", DELIVERED, "id-1", "id-2"))
    h.clock.advance(60)
    newer = (await s.enqueue([ev(4, "ns/a")])).queued["ns/a"][0]
    entries = await s.requeue("ns/a", ["id-2", "id-9", "id-1"], record("ns/a", REQUEUED, "id-2", "id-1"))
    assert ids(entries) == ["id-2", "id-1"]  # id-9 was never accepted: left out
    assert newer.qid < entries[0].qid < entries[1].qid
    assert (entries[0].seq, entries[0].body, entries[0].received_at) == (q[1].seq, b'{"n":2}', T0)
    pending = await s.pending("ns/a")
    assert ids(pending) == ["id-3", "id-4", "id-2", "id-1"] and pending[2:] == entries
    assert (await s.lane_state("ns/a")).pending == 4
    assert [r.outcome for r in await s.attempts("ns/a", AttemptQuery())] == [DELIVERED, REQUEUED]
    other = await s.requeue("ns/b", ["id-3"], record("ns/b", REQUEUED, "id-3"))  # a webhook that never had it
    assert await s.pending("ns/b") == other and ids(other) == ["id-3"] and "ns/b" in await s.webhook_keys()
    assert await s.requeue("ns/a", ["id-9"], record("ns/a", REQUEUED, "id-9")) == []
    assert len(await s.attempts("ns/a", AttemptQuery(outcome=REQUEUED))) == 2  # logged even when nothing queued
    [again] = await s.requeue("ns/a", ["id-3"], record("ns/a", REQUEUED, "id-3"))  # still queued: queued twice
    assert ids(await s.pending("ns/a")) == ["id-3", "id-4", "id-2", "id-1", "id-3"] and again.qid > entries[1].qid


async def test_hand_over_moves_the_whole_queue_held_batch_first_in_one_commit(h: Harness) -> None:
    """The fallback takes over (issue 14): every entry of ns/a moves to ns/b's tail, the held batch first, both
    logs name the moved events, the retry state (fallback set) is saved with it, and all of it survives a restart;
    the events then count as routed to both (redelivery from either works)."""
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a", "ns/b"), ev(3, "ns/a")])).queued
    h.clock.advance(5)
    retry = RetryState(attempts=3, paused="retryLimitReached", last_reason="HTTP 503", fallback="ns/b")
    moved = await s.hand_over("ns/a", "ns/b", [q["ns/a"][1].qid], record("ns/a", SKIPPED, note="handed"),
                              record("ns/b", REQUEUED, note="from ns/a"), retry)  # fmt: skip
    assert ids(moved) == ["id-2", "id-1", "id-3"] and all(e.qid > q["ns/a"][-1].qid for e in moved)
    assert [e.seq for e in moved] == [q["ns/a"][1].seq, q["ns/a"][0].seq, q["ns/a"][2].seq]
    for restarted in (False, True):
        store = await h.reopen() if restarted else s
        assert await store.pending("ns/a") == [] and (await store.lane_state("ns/a")).retry == retry
        assert ids(await store.pending("ns/b")) == ["id-2", "id-2", "id-1", "id-3"]  # its own id-2, then a's
        assert [(r.outcome, r.event_ids, r.note) for r in await store.attempts("ns/a", AttemptQuery())] == [
            (SKIPPED, ["id-2", "id-1", "id-3"], "handed")]  # fmt: skip
        assert [(r.outcome, r.event_ids) for r in await store.attempts("ns/b", AttemptQuery())] == [
            (REQUEUED, ["id-2", "id-1", "id-3"])]  # fmt: skip
        for webhook in ("ns/a", "ns/b"):
            assert ids(await store.routed_events(webhook, ["id-1", "id-3"])) == ["id-1", "id-3"]
    empty = await h.store.hand_over("ns/a", "ns/b", [], record("ns/a", SKIPPED), record("ns/b", REQUEUED), retry)
    assert empty == [] and len(await h.store.pending("ns/b")) == 4


# -- log -----------------------------------------------------------------------------------------------------


async def test_log_keeps_every_field_of_a_record(h: Harness) -> None:
    s = h.store
    sent = AttemptRecord("ns/a", "d-7", ("id-1", "id-2"), 3, T0, 12.5, FAILED, 500, "boom", "nope", "note", id=999)
    await s.log(sent)
    await s.log(replace(sent, delivery_id="d-8", status_code=None, error=None, response_body="", note=""))
    first, second = await s.attempts("ns/a", AttemptQuery())
    assert first.id is not None and second.id is not None and first.id < second.id
    assert replace(first, event_ids=tuple(first.event_ids)) == replace(sent, id=first.id)
    assert (second.delivery_id, second.status_code, second.error, second.response_body) == ("d-8", None, None, "")
    assert await s.attempts("ns/b", AttemptQuery()) == []


async def test_the_log_keeps_what_it_was_given_not_a_reference(h: Harness) -> None:
    s = h.store
    event_ids = ["id-1"]
    await s.log(record("ns/a", DELIVERED, event_ids=event_ids))
    event_ids.append("id-2")  # the caller reuses its list
    [line] = await s.attempts("ns/a", AttemptQuery())
    assert list(line.event_ids) == ["id-1"]
    if isinstance(line.event_ids, list):
        line.event_ids.append("id-3")  # a caller edits what it read
    assert [list(r.event_ids) for r in await s.attempts("ns/a", AttemptQuery())] == [["id-1"]]


async def test_attempts_filter_by_outcome_and_time_and_page_with_a_cursor(h: Harness) -> None:
    s = h.store
    for i in range(25):
        await s.log(record("ns/a", FAILED if i % 5 == 0 else DELIVERED, started_at=T0 + i, attempt=i))
        if i == 12:
            await s.log(record("ns/b", started_at=T0 + i))  # another webhook's line in between
    first = await s.attempts("ns/a", AttemptQuery(limit=10))
    second = await s.attempts("ns/a", AttemptQuery(limit=10, after_id=first[-1].id))
    third = await s.attempts("ns/a", AttemptQuery(limit=10, after_id=second[-1].id))
    assert [r.attempt for r in first + second + third] == list(range(25)) and len(third) == 5
    assert await s.attempts("ns/a", AttemptQuery(after_id=third[-1].id)) == []
    failed = await s.attempts("ns/a", AttemptQuery(outcome=FAILED))
    assert [r.attempt for r in failed] == [0, 5, 10, 15, 20]
    failed_page = await s.attempts("ns/a", AttemptQuery(outcome=FAILED, after_id=failed[1].id, limit=2))
    assert [r.attempt for r in failed_page] == [10, 15]
    window = await s.attempts("ns/a", AttemptQuery(since=T0 + 10, until=T0 + 12))  # [since, until)
    assert [r.attempt for r in window] == [10, 11]
    assert [r.attempt for r in await s.attempts("ns/a", AttemptQuery(since=T0 + 23))] == [23, 24]
    assert [r.attempt for r in await s.attempts("ns/a", AttemptQuery(until=T0 + 2))] == [0, 1]
    assert [r.attempt for r in await s.attempts("ns/a", AttemptQuery(since=T0 + 3, outcome=FAILED, limit=1))] == [5]


async def test_events_by_id_returns_stored_events_once_in_acceptance_order(h: Harness) -> None:
    s = h.store
    await s.enqueue([ev(1, "ns/a"), ev(2), ev(3, "ns/b")])
    got = await s.events_by_id(["id-3", "id-9", "id-1", "id-3"])
    assert [(e.event_id, e.qid, e.body, e.received_at) for e in got] == [
        ("id-1", 0, b'{"n":1}', T0), ("id-3", 0, b'{"n":3}', T0)]  # fmt: skip
    assert got[0].seq < got[1].seq and await s.events_by_id([]) == []


async def test_delivered_events_are_what_the_log_shows_delivered_or_skipped(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(i, "ns/a") for i in range(1, 6)])).queued["ns/a"]
    h.clock.advance(100)
    later = (await s.enqueue([ev(6, "ns/a")])).queued["ns/a"]
    await s.complete("ns/a", [q[0].qid, q[1].qid], record("ns/a", DELIVERED, "id-1", "id-2", started_at=T0 + 1))
    await s.fail("ns/a", record("ns/a", FAILED, "id-3", started_at=T0 + 2), RetryState())
    await s.skip("ns/a", [q[3].qid], record("ns/a", SKIPPED, "id-4", started_at=T0 + 3))
    await s.log(record("ns/b", DELIVERED, "id-5", started_at=T0 + 4))
    await s.complete("ns/a", [later[0].qid], record("ns/a", DELIVERED, "id-6", "id-404", started_at=T0 + 101))
    assert ids(await s.delivered_events("ns/a", None, None, 100)) == ["id-1", "id-2", "id-4", "id-6"]
    assert ids(await s.delivered_events("ns/a", T0, T0 + 100, 100)) == ["id-1", "id-2", "id-4"]  # [since, until)
    assert ids(await s.delivered_events("ns/a", T0 + 100, None, 100)) == ["id-6"]
    assert ids(await s.delivered_events("ns/a", None, None, 2)) == ["id-1", "id-2"]
    assert await s.delivered_events("ns/a", T0 + 200, None, 100) == []
    assert await s.delivered_events("ns/a", T0 - 10, T0, 100) == []
    assert ids(await s.delivered_events("ns/b", None, None, 100)) == ["id-5"]
    assert all(e.qid == 0 and e.received_at in (T0, T0 + 100) for e in await s.delivered_events("ns/a", None, None, 9))


# -- maintenance ---------------------------------------------------------------------------------------------


async def test_purge_forgets_queue_retry_state_and_counters_but_not_events_or_log(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a", "ns/b"), ev(2, "ns/a"), ev(3, "ns/a")])).queued["ns/a"]
    await s.complete("ns/a", [q[0].qid], record("ns/a"))
    await s.fail("ns/a", record("ns/a", FAILED, "id-2"), RetryState(held_qids=(q[1].qid,), attempts=1))
    await s.purge("ns/a")
    assert await s.lane_state("ns/a") == LaneState(RetryState(), Counters(), 0) and await s.pending("ns/a") == []
    assert ids(await s.pending("ns/b")) == ["id-1"] and await s.webhook_keys() == ["ns/b"]
    assert ids(await s.events_by_id(["id-1", "id-2", "id-3"])) == ["id-1", "id-2", "id-3"]
    assert len(await s.attempts("ns/a", AttemptQuery())) == 2  # the log ages out by retention
    await s.purge("ns/nobody")  # nothing to forget is no error


async def test_prune_drops_old_delivered_events_and_log_lines_never_queued_events(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a"), ev(3)])).queued["ns/a"]
    await s.complete("ns/a", [q[0].qid], record("ns/a", DELIVERED, "id-1", started_at=T0))
    h.clock.advance(100)
    q4 = (await s.enqueue([ev(4, "ns/a")])).queued["ns/a"][0]
    await s.complete("ns/a", [q4.qid], record("ns/a", DELIVERED, "id-4", started_at=T0 + 100))
    assert await s.prune(T0 + 50) == 2  # id-1 (delivered) and id-3 (routed nowhere); id-2 is queued, id-4 newer
    assert ids(await s.events_by_id(["id-1", "id-2", "id-3", "id-4"])) == ["id-2", "id-4"]
    assert await s.pending("ns/a") == [q[1]]
    assert [r.started_at for r in await s.attempts("ns/a", AttemptQuery())] == [T0 + 100]
    assert await s.requeue("ns/a", ["id-1"], record("ns/a", REQUEUED)) == []  # gone for good
    assert await s.prune(T0 + 50) == 0
    assert await s.prune(T0 + 100) == 0  # the horizon itself is kept
    assert [r.started_at for r in await s.attempts("ns/a", AttemptQuery())] == [T0 + 100]
    assert await s.prune(T0 + 10_000) == 1 and await s.pending("ns/a") == [q[1]]  # queued, however old
    assert (await s.lane_state("ns/a")).counters.delivered == 2  # counters are not log lines
    again = await s.enqueue([ev(1, "ns/a")])  # a pruned id is new again, and numbers are never reused
    assert again.seqs[0] is not None and again.seqs[0] > q4.seq and again.queued["ns/a"][0].qid > q4.qid


async def test_webhook_keys_name_everything_the_store_holds_something_for(h: Harness) -> None:
    s = h.store
    assert await s.webhook_keys() == []
    q = await s.enqueue([ev(1, "ns/c"), ev(2, "ns/a")])
    await s.complete("ns/a", [q.queued["ns/a"][0].qid], record("ns/a"))  # queue empty, counters remain
    await s.save_retry_state("ns/b", RetryState(paused="failed"))
    assert await s.webhook_keys() == ["ns/a", "ns/b", "ns/c"]
    await s.purge("ns/c")
    await s.log(record("ns/d"))  # a log line alone is nothing to reconcile
    assert await s.webhook_keys() == ["ns/a", "ns/b"]


async def test_everything_survives_a_restart(h: Harness) -> None:
    s = h.store
    q = await s.enqueue([ev(1, "ns/a", "ns/b"), ev(2, "ns/a")])
    retry = RetryState((q.queued["ns/a"][0].qid,), 2, T0 + 9, None, T0, 503, "HTTP 503")
    await s.skip("ns/a", [q.queued["ns/a"][1].qid], record("ns/a", SKIPPED, "id-2"))
    await s.fail("ns/a", record("ns/a", FAILED, status_code=503), retry)
    await s.complete("ns/b", [q.queued["ns/b"][0].qid], record("ns/b", DELIVERED, started_at=T0 + 1))

    async def snapshot(s: Store) -> list[object]:
        return [await s.lane_state("ns/a"), await s.lane_state("ns/b"), await s.pending("ns/a"),
                await s.pending("ns/b"), await s.attempts("ns/a", AttemptQuery()), await s.webhook_keys(),
                await s.attempts("ns/b", AttemptQuery()), await s.events_by_id(["id-1", "id-2"]),
                await s.delivered_events("ns/a", None, None, 10)]  # fmt: skip

    before = await snapshot(s)
    assert before[0] == LaneState(retry, Counters(0, 1, None), 1, 1, T0)  # the skipped id-2 is a dead letter
    s = await h.reopen()
    assert await snapshot(s) == before
    new = await s.enqueue([ev(3, "ns/a"), ev(1, "ns/a")])
    assert new.seqs[1] is None  # duplicates are still recognised
    assert new.queued["ns/a"][0].qid > q.queued["ns/a"][-1].qid and (new.seqs[0] or 0) > (q.seqs[-1] or 0)


async def test_a_closed_store_is_unavailable(h: Harness) -> None:
    s = h.store
    await s.close()
    with pytest.raises(StoreUnavailable):
        await s.enqueue([ev(1, "ns/a")])
    with pytest.raises(StoreUnavailable):
        await s.lane_state("ns/a")
    with pytest.raises(StoreUnavailable):
        await s.attempts("ns/a", AttemptQuery())


async def test_a_write_the_store_cannot_take_fails_whole_and_leaves_nothing_behind(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a")])).queued["ns/a"]
    await h.backend.outage(s, True)
    with pytest.raises(StoreUnavailable):
        await s.enqueue([ev(2, "ns/a", body=b"x" * 200_000), ev(3, "ns/b")])
    await h.backend.outage(s, False)
    assert await s.pending("ns/a") == q and await s.pending("ns/b") == []
    assert await s.events_by_id(["id-2", "id-3"]) == [] and await s.webhook_keys() == ["ns/a"]
    retried = await s.enqueue([ev(2, "ns/a", body=b"x" * 200_000), ev(3, "ns/b")])
    assert retried.accepted == 2  # the failed call left no trace, not even a duplicate id


# -- routed: what redelivery may touch (issue 13, finding 3) --------------------------------------------------


async def test_routed_events_are_those_queued_logged_or_dead_lettered_for_that_webhook(h: Harness) -> None:
    """Redelivery by id may only touch events the webhook itself was given: queued for it, in its delivery log
    (delivered, failed, skipped, redelivered to it) or in its dead letters — after a restart as before."""
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/b"), ev(3, "ns/a", "ns/b"), ev(4), ev(5, "ns/a")])).queued
    asked = ["id-5", "id-4", "id-3", "id-2", "id-1", "id-9", "id-3"]
    assert ids(await s.routed_events("ns/a", asked)) == ["id-1", "id-3", "id-5"]  # acceptance order, each once
    assert ids(await s.routed_events("ns/b", asked)) == ["id-2", "id-3"]
    assert await s.routed_events("ns/c", asked) == [] and await s.routed_events("ns/a", []) == []
    # Delivered (dequeued), failed and dead-lettered events stay routed to their webhook, and only to it.
    await s.complete("ns/a", [q["ns/a"][0].qid], record("ns/a", DELIVERED, "id-1"))
    await s.fail("ns/b", record("ns/b", FAILED, "id-2"), RetryState(held_qids=(q["ns/b"][0].qid,), attempts=1))
    await s.skip("ns/b", [q["ns/b"][0].qid], record("ns/b", SKIPPED, "id-2"))
    await s.requeue("ns/c", ["id-4"], record("ns/c", REQUEUED, "id-4"))  # redelivered to it: now routed to it
    await s.log(record("ns/a", AttemptOutcome.TEST, "id-4"))  # a test line's id is never a routing
    for restarted in (False, True):
        store = await h.reopen() if restarted else s
        assert ids(await store.routed_events("ns/a", asked)) == ["id-1", "id-3", "id-5"]
        assert ids(await store.routed_events("ns/b", asked)) == ["id-2", "id-3"]
        assert ids(await store.routed_events("ns/c", asked)) == ["id-4"]
    got = await h.store.routed_events("ns/a", ["id-1"])
    assert [(e.qid, e.seq, e.body, e.received_at) for e in got] == [(0, q["ns/a"][0].seq, b'{"n":1}', T0)]


async def test_routed_events_survive_the_queue_row_but_not_the_event(h: Harness) -> None:
    """A dead letter alone (no log line: e.g. dequeued by a store bound) is proof enough; a pruned event is gone."""
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a")])).queued["ns/a"]
    await s.skip("ns/a", [q[0].qid], record("ns/a", SKIPPED, "id-other", note="a line that names another id"))
    assert ids(await s.routed_events("ns/a", ["id-1", "id-2", "id-other"])) == ["id-1", "id-2"]
    await s.complete("ns/a", [q[1].qid], record("ns/a", DELIVERED, "id-2", started_at=T0))
    h.clock.advance(3600)
    await s.prune(T0 + 1)
    assert await s.routed_events("ns/a", ["id-1", "id-2"]) == []


async def test_a_log_line_older_than_the_event_is_no_routing(h: Harness) -> None:
    """An id accepted again after its first event was pruned: the old log line named the old event, not this one."""
    s = h.store
    [entry] = (await s.enqueue([ev(1, "ns/a")])).queued["ns/a"]
    await s.complete("ns/a", [entry.qid], record("ns/a", DELIVERED, "id-1", started_at=T0 + 10))
    h.clock.advance(100)
    await s.prune(T0 + 5)  # the event goes, the later log line stays
    await s.enqueue([ev(1, "ns/b")])
    assert await s.routed_events("ns/a", ["id-1"]) == [] and ids(await s.routed_events("ns/b", ["id-1"])) == ["id-1"]
