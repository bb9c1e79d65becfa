"""Store bounds (issue 13, finding 4), on every backend: the queue entries a webhook's limits push out go to the
dead letters (kept, logged, redeliverable — never silently deleted), retention ages dead letters out, and a store
over its space budget refuses new events before the volume is full.

Before: a failed or paused Webhook queued forever, ``prune`` never touched a queued event (2,000 events → 12 MB with
nothing pruned) and the only refusal was SQLite's own "disk full", when the volume was already full for everyone."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook_operator.store.base import AttemptOutcome, AttemptQuery, RetryState, StoreFull, StoreUnavailable

from ._backends import BACKENDS, T0, Clock, Harness, budgeted, ev, record

SKIPPED, DELIVERED = AttemptOutcome.SKIPPED, AttemptOutcome.DELIVERED


def ids(events: object) -> list[str]:
    return [e.event_id for e in events]  # type: ignore[attr-defined]


async def test_overdue_picks_the_oldest_beyond_the_cap_and_the_expired_never_the_protected(h: Harness) -> None:
    s = h.store
    first = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a"), ev(3, "ns/a", "ns/b")])).queued["ns/a"]
    h.clock.advance(100)
    await s.enqueue([ev(i, "ns/a") for i in range(4, 9)])  # 8 queued for ns/a, 1 for ns/b
    held = (first[0].qid,)
    # over a cap of 5 by 3: the three oldest that are not held
    assert ids(await s.overdue("ns/a", keep=5, received_before=None, protect=held)) == ["id-2", "id-3", "id-4"]
    # accepted before T0 + 50: ids 1-3, less the held one; the cap alone is not exceeded
    assert ids(await s.overdue("ns/a", keep=100, received_before=T0 + 50, protect=held)) == ["id-2", "id-3"]
    # both rules: their union, oldest first, at most ``limit``
    assert ids(await s.overdue("ns/a", keep=4, received_before=T0 + 50, protect=held)) == [
        "id-2", "id-3", "id-4", "id-5"]  # fmt: skip
    assert ids(await s.overdue("ns/a", keep=4, received_before=None, protect=held, limit=2)) == ["id-2", "id-3"]
    assert await s.overdue("ns/a", keep=8, received_before=T0, protect=()) == []  # the horizon is exclusive
    assert await s.overdue("ns/b", keep=1, received_before=None) == []
    assert len(await s.pending("ns/a")) == 8, "a read: nothing moved"


async def test_dead_letter_moves_entries_logs_them_and_keeps_the_retry_state(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(i, "ns/a") for i in range(1, 6)])).queued["ns/a"]
    holding = RetryState(held_qids=(q[0].qid,), attempts=3, paused="retryLimitReached", last_reason="HTTP 500")
    await s.save_retry_state("ns/a", holding)
    line = record("ns/a", SKIPPED, "id-2", "id-3", started_at=T0 + 7, note="queue limit: over maxQueued 3")
    await s.dead_letter("ns/a", [q[1].qid, q[2].qid], line)
    assert ids(await s.pending("ns/a")) == ["id-1", "id-4", "id-5"]
    state = await s.lane_state("ns/a")
    assert state.retry == holding, "the held batch is still being retried: its state is not touched"
    assert (state.pending, state.dead_letters, state.dead_lettered_since) == (3, 2, T0 + 7)
    assert state.counters.delivered == 0 and state.counters.failed == 0
    [logged] = await s.attempts("ns/a", AttemptQuery(outcome=SKIPPED))
    assert list(logged.event_ids) == ["id-2", "id-3"] and logged.note == "queue limit: over maxQueued 3"
    # dead letters stay redeliverable: the events are kept and the log says they were skipped by ns/a
    assert ids(await s.delivered_events("ns/a", None, None, 10)) == ["id-2", "id-3"]
    assert ids(await s.requeue("ns/a", ["id-2"], record("ns/a", AttemptOutcome.REDELIVERY_QUEUED))) == ["id-2"]
    await s.skip("ns/a", [q[0].qid], record("ns/a", SKIPPED, "id-1", started_at=T0 + 9))
    state = await s.lane_state("ns/a")
    assert (state.dead_letters, state.dead_lettered_since) == (3, T0 + 7), "a skip is a dead letter too"
    assert (await s.lane_state("ns/other")).dead_letters == 0


async def test_retention_prunes_old_dead_letters_and_keeps_the_events_of_recent_ones(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a"), ev(3, "ns/a")])).queued["ns/a"]
    await s.dead_letter("ns/a", [q[0].qid], record("ns/a", SKIPPED, "id-1", started_at=T0 + 10))
    h.clock.advance(1000)
    await s.dead_letter("ns/a", [q[1].qid], record("ns/a", SKIPPED, "id-2", started_at=T0 + 1000))
    # the horizon passes every event's acceptance and the first dead letter, not the second
    assert await s.prune(T0 + 500) == 1
    assert ids(await s.events_by_id(["id-1", "id-2", "id-3"])) == ["id-2", "id-3"], (
        "id-1: its dead letter aged out; id-2: dead-lettered recently, kept to be redelivered; id-3: queued"
    )
    state = await s.lane_state("ns/a")
    assert (state.dead_letters, state.dead_lettered_since) == (1, T0 + 1000)
    assert await s.prune(T0 + 2000) == 1 and (await s.lane_state("ns/a")).dead_letters == 0
    assert ids(await s.events_by_id(["id-2", "id-3"])) == ["id-3"], "queued, however old"


async def test_dead_letters_survive_a_restart(h: Harness) -> None:
    q = (await h.store.enqueue([ev(1, "ns/a"), ev(2, "ns/a")])).queued["ns/a"]
    await h.store.dead_letter("ns/a", [q[0].qid], record("ns/a", SKIPPED, "id-1", started_at=T0 + 3))
    s = await h.reopen()
    state = await s.lane_state("ns/a")
    assert (state.pending, state.dead_letters, state.dead_lettered_since) == (1, 1, T0 + 3)
    assert "ns/a" in await s.webhook_keys()


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_store_over_its_budget_refuses_events_whole_and_says_so(backend: str, tmp_path: Path) -> None:
    clock = Clock()
    s = budgeted(backend, tmp_path, clock, max_bytes=256 * 1024)
    await s.open()
    try:
        usage = await s.usage()
        assert usage.budget_bytes == 256 * 1024 and usage.used_bytes < usage.budget_bytes and not usage.over
        big = b'{"pad":"' + b"x" * 20_000 + b'"}'
        accepted = 0
        with pytest.raises(StoreFull) as refused:
            for i in range(200):  # 4 MB offered to a 256 KiB budget
                accepted += (await s.enqueue([ev(i, "ns/a", body=big)])).accepted
                clock.advance(2)  # a budget measurement may be reused for a second; never longer
        assert isinstance(refused.value, StoreUnavailable), "callers that only know StoreUnavailable still refuse"
        assert "256 KiB" in str(refused.value) or "262144" in str(refused.value), str(refused.value)
        usage = await s.usage()
        assert usage.over and refused.value.usage.budget_bytes == 256 * 1024
        assert 0 < accepted < 200 and len(await s.pending("ns/a", limit=-1)) == accepted, "nothing half-taken"
        assert usage.used_bytes < 2 * 256 * 1024, "refused before it ran far past the budget"
        # making room (dead letters age out, delivered events are pruned) lets events in again
        queued = await s.pending("ns/a", limit=-1)
        await s.complete("ns/a", [e.qid for e in queued], record("ns/a", DELIVERED, started_at=clock.now))
        clock.advance(10)
        assert await s.prune(clock.now) == accepted
        clock.advance(2)
        assert not (await s.usage()).over
        assert (await s.enqueue([ev(1000, "ns/a", body=big)])).accepted == 1
    finally:
        await s.close()


async def test_a_store_without_a_budget_reports_its_size_only(h: Harness) -> None:
    await h.store.enqueue([ev(1, "ns/a", body=b"x" * 5000)])
    usage = await h.store.usage()
    assert usage.budget_bytes is None and not usage.over and usage.used_bytes >= 5000
