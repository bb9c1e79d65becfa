"""What only the in-memory store has: simulated outages and dead letters a test can look at.

Everything a backend promises is in ``test_contract.py``, which runs against this store too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from webhook_operator.store.base import AttemptOutcome, AttemptQuery, RetryState, Store, StoreUnavailable
from webhook_operator.store.memory import DeadLetter, MemoryStore

from ._backends import T0, Clock, ev, record


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore(clock=Clock())
    await s.open()
    yield s
    await s.close()


async def _everything(s: MemoryStore) -> list[object]:
    keys = ["ns/a", "ns/b"]
    return [await s.webhook_keys(), *[await s.lane_state(k) for k in keys], *[await s.pending(k) for k in keys],
            *[await s.attempts(k, AttemptQuery()) for k in keys], await s.events_by_id(["id-1", "id-2", "id-3"]),
            await s.delivered_events("ns/a", None, None, 10), list(s.dead_letters)]  # fmt: skip


def _writes(qid: int) -> dict[str, Callable[[Store], Awaitable[object]]]:
    return {
        "enqueue": lambda s: s.enqueue([ev(3, "ns/a")]),
        "complete": lambda s: s.complete("ns/a", [qid], record("ns/a")),
        "fail": lambda s: s.fail("ns/a", record("ns/a", AttemptOutcome.FAILED), RetryState(held_qids=(qid,))),
        "save_retry_state": lambda s: s.save_retry_state("ns/a", RetryState(paused="failed")),
        "skip": lambda s: s.skip("ns/a", [qid], record("ns/a", AttemptOutcome.SKIPPED)),
        "requeue": lambda s: s.requeue("ns/b", ["id-1"], record("ns/b", AttemptOutcome.REDELIVERY_QUEUED)),
        "log": lambda s: s.log(record("ns/a")),
        "purge": lambda s: s.purge("ns/a"),
        "prune": lambda s: s.prune(T0 + 3600),
    }


@pytest.mark.parametrize("write", sorted(_writes(0)))
async def test_fail_writes_makes_every_write_unavailable_and_changes_nothing(store: MemoryStore, write: str) -> None:
    q = (await store.enqueue([ev(1, "ns/a"), ev(2, "ns/a", "ns/b")])).queued["ns/a"]
    await store.complete("ns/a", [q[1].qid], record("ns/a", AttemptOutcome.DELIVERED, "id-2"))
    before = await _everything(store)
    store.fail_writes = True
    with pytest.raises(StoreUnavailable, match="simulated"):
        await _writes(q[0].qid)[write](store)
    assert await _everything(store) == before  # reads still work during a write outage
    store.fail_writes = False
    await _writes(q[0].qid)[write](store)
    assert await _everything(store) != before


async def test_fail_reads_makes_reads_unavailable_but_not_writes(store: MemoryStore) -> None:
    store.fail_reads = True
    assert (await store.enqueue([ev(1, "ns/a")])).accepted == 1
    reads: list[Callable[[], Awaitable[object]]] = [
        lambda: store.lane_state("ns/a"), lambda: store.pending("ns/a"), lambda: store.webhook_keys(),
        lambda: store.attempts("ns/a", AttemptQuery()), lambda: store.events_by_id(["id-1"]),
        lambda: store.delivered_events("ns/a", None, None, 1)]  # fmt: skip
    for read in reads:
        with pytest.raises(StoreUnavailable, match="simulated"):
            await read()
    store.fail_reads = False
    assert (await store.lane_state("ns/a")).pending == 1


async def test_a_store_that_was_never_opened_is_unavailable() -> None:
    s = MemoryStore()
    with pytest.raises(StoreUnavailable, match="not open"):
        await s.enqueue([ev(1, "ns/a")])
    with pytest.raises(StoreUnavailable, match="not open"):
        await s.pending("ns/a")


async def test_skips_are_kept_as_dead_letters_until_retention(store: MemoryStore) -> None:
    q = (await store.enqueue([ev(1, "ns/a"), ev(2, "ns/a")])).queued["ns/a"]
    await store.skip("ns/a", [q[1].qid, q[0].qid], record("ns/a", AttemptOutcome.SKIPPED, started_at=T0 + 5))
    [line] = await store.attempts("ns/a", AttemptQuery())
    assert line.id is not None
    assert store.dead_letters == [DeadLetter("ns/a", e.seq, e.event_id, T0 + 5, line.id) for e in q]  # in qid order
    await store.prune(T0 + 5)
    assert len(store.dead_letters) == 2  # the horizon is exclusive
    await store.prune(T0 + 6)
    assert store.dead_letters == []


async def test_the_clock_stamps_accepted_events() -> None:
    clock = Clock(T0)
    s = MemoryStore(clock=clock)
    await s.open()
    clock.advance(42)
    [queued] = (await s.enqueue([ev(1, "ns/a")])).queued["ns/a"]
    assert queued.received_at == T0 + 42
