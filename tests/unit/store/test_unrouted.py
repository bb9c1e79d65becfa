"""The unrouted-events contract (``store.unrouted``, issue 15 intake availability) on every backend in
``_backends.BACKENDS``: events accepted before the Webhook list is known are kept durably, unrouted, and routed later
in arrival order, exactly once, with nothing newer overtaking them. What only PostgreSQL has (two replicas routing
the same chunk at once) is at the end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from webhook_operator.store.base import Store, StoreUnavailable
from webhook_operator.store.postgres import PostgresStore
from webhook_operator.store.unrouted import Routing

from ._backends import BACKENDS, Clock, Harness, ev, record

UNROUTED, BEHIND, GIVEN = Routing.UNROUTED, Routing.BEHIND_UNROUTED, Routing.GIVEN


async def pending_ids(s: Store, webhook: str) -> list[str]:
    return [e.event_id for e in await s.pending(webhook)]


async def route_all(s: Store, route: dict[str, list[str]]) -> list[str]:
    """Route every unrouted event by ``route`` (event id → webhooks), chunk by chunk; the ids routed, in order."""
    done: list[str] = []
    while chunk := await s.unrouted(limit=2):
        result = await s.route_unrouted([(e.seq, route.get(e.event_id, [])) for e in chunk])
        done += [e.event_id for e, seq in zip(chunk, result.seqs, strict=True) if seq is not None]
    return done


async def test_unrouted_events_are_accepted_and_kept_without_queue_entries(h: Harness) -> None:
    s = h.store
    result = await s.enqueue([ev(1, "ns/a"), ev(2, "ns/b"), ev(3)], routing=UNROUTED)
    assert (result.accepted, result.duplicates, result.queued, result.unrouted) == (3, 0, {}, True)
    assert await s.pending("ns/a") == [] and await s.pending("ns/b") == []
    listed = await s.unrouted()
    assert [e.event_id for e in listed] == ["id-1", "id-2", "id-3"]
    assert [e.seq for e in listed] == result.seqs and {e.qid for e in listed} == {0}
    assert listed[0].body == b'{"n":1}'
    assert await s.unrouted_count() == 3
    assert [e.event_id for e in await s.unrouted(limit=2)] == ["id-1", "id-2"]


async def test_routing_queues_in_the_given_order_and_clears_the_marks_in_one_commit(h: Harness) -> None:
    s = h.store
    accepted = await s.enqueue([ev(1), ev(2), ev(3)], routing=UNROUTED)
    seq1, seq2, seq3 = accepted.seqs
    assert seq1 is not None and seq2 is not None and seq3 is not None
    result = await s.route_unrouted([(seq1, ["ns/a", "ns/b"]), (seq2, []), (seq3, ["ns/a"])])
    assert result.seqs == [seq1, seq2, seq3]
    assert {k: [e.event_id for e in v] for k, v in result.queued.items()} == {"ns/a": ["id-1", "id-3"],
                                                                              "ns/b": ["id-1"]}  # fmt: skip
    assert result.queued["ns/a"] == await s.pending("ns/a")  # the entries as the lane will read them
    assert result.queued["ns/a"][0].qid < result.queued["ns/a"][1].qid
    assert await s.unrouted() == [] and await s.unrouted_count() == 0
    # Exactly once: routing the same events again (another replica's stale chunk) does nothing.
    again = await s.route_unrouted([(seq1, ["ns/a"]), (seq3, ["ns/a"])])
    assert again.seqs == [None, None] and again.queued == {}
    assert await pending_ids(s, "ns/a") == ["id-1", "id-3"]


async def test_new_events_queue_behind_unrouted_ones_until_all_are_routed(h: Harness) -> None:
    s = h.store
    await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a")], routing=UNROUTED)  # before the list is known
    behind = await s.enqueue([ev(3, "ns/a")], routing=BEHIND)  # the list is known, but 1 and 2 still wait
    assert behind.unrouted and behind.queued == {} and behind.accepted == 1
    assert await pending_ids(s, "ns/a") == []  # 3 did not overtake 1 and 2
    assert await route_all(s, {f"id-{i}": ["ns/a"] for i in (1, 2, 3)}) == ["id-1", "id-2", "id-3"]
    direct = await s.enqueue([ev(4, "ns/a")], routing=BEHIND)  # nothing waits any more: routed at once
    assert not direct.unrouted and [e.event_id for e in direct.queued["ns/a"]] == ["id-4"]
    assert await pending_ids(s, "ns/a") == ["id-1", "id-2", "id-3", "id-4"]


async def test_given_routing_is_not_held_back_by_unrouted_events(h: Harness) -> None:
    """Trigger events name their targets themselves (and bypass filters): they are never parked."""
    s = h.store
    await s.enqueue([ev(1, "ns/a")], routing=UNROUTED)
    given = await s.enqueue([ev(2, "ns/t")])
    assert not given.unrouted and [e.event_id for e in given.queued["ns/t"]] == ["id-2"]
    assert await s.unrouted_count() == 1


async def test_a_duplicate_id_is_accepted_once_whether_its_first_copy_was_routed_or_not(h: Harness) -> None:
    s = h.store
    first = await s.enqueue([ev(1, "ns/a"), ev(1, "ns/a")], routing=UNROUTED)
    assert first.seqs[1] is None and first.accepted == 1
    for routing in (GIVEN, BEHIND, UNROUTED):  # a later copy, routed or not: a duplicate
        again = await s.enqueue([ev(1, "ns/a")], routing=routing)
        assert again.seqs == [None] and again.queued == {}
    assert await route_all(s, {"id-1": ["ns/a"]}) == ["id-1"]
    late = await s.enqueue([ev(1, "ns/a")], routing=BEHIND)  # after it was routed: still a duplicate
    assert late.seqs == [None] and await pending_ids(s, "ns/a") == ["id-1"]
    routed = await s.enqueue([ev(2, "ns/a")])  # and the other way round: routed first, then an unrouted copy
    assert routed.accepted == 1 and (await s.enqueue([ev(2)], routing=UNROUTED)).seqs == [None]
    assert await s.unrouted_count() == 0


async def test_unrouted_events_survive_a_restart_and_are_routed_after_it(h: Harness) -> None:
    await h.store.enqueue([ev(1, "ns/a"), ev(2, "ns/a")], routing=UNROUTED)
    s = await h.reopen()  # the process died after the 202s, before the Webhook list was known
    assert [e.event_id for e in await s.unrouted()] == ["id-1", "id-2"]
    assert (await s.enqueue([ev(3, "ns/a")], routing=BEHIND)).unrouted  # still behind them after the restart
    assert await route_all(s, {f"id-{i}": ["ns/a"] for i in (1, 2, 3)}) == ["id-1", "id-2", "id-3"]
    s = await h.reopen()
    assert await s.unrouted_count() == 0 and await pending_ids(s, "ns/a") == ["id-1", "id-2", "id-3"]


async def test_retention_never_drops_an_unrouted_event(h: Harness) -> None:
    s = h.store
    await s.enqueue([ev(1)], routing=UNROUTED)
    await s.enqueue([ev(2)])  # routed nowhere: retention may drop it
    h.clock.advance(3600)
    assert await s.prune(h.clock.now) == 1
    assert [e.event_id for e in await s.unrouted()] == ["id-1"]
    assert [e.event_id for e in await s.events_by_id(["id-1", "id-2"])] == ["id-1"]


async def test_a_store_that_cannot_write_takes_nothing_unrouted(h: Harness) -> None:
    s = h.store
    await s.enqueue([ev(1, "ns/a")], routing=UNROUTED)
    await h.backend.outage(s, True)
    try:
        with pytest.raises(StoreUnavailable):
            await s.enqueue([ev(2, "ns/a", body=b"x" * 200_000)], routing=UNROUTED)
    finally:
        await h.backend.outage(s, False)
    assert [e.event_id for e in await s.unrouted()] == ["id-1"] and await s.pending("ns/a") == []
    assert await s.events_by_id(["id-2"]) == []


async def test_the_log_and_redelivery_see_an_unrouted_event_like_any_stored_one(h: Harness) -> None:
    s = h.store
    await s.enqueue([ev(1)], routing=UNROUTED)
    assert [e.event_id for e in await s.events_by_id(["id-1"])] == ["id-1"]
    requeued = await s.requeue("ns/a", ["id-1"], record("ns/a"))  # an explicit redelivery does not wait
    assert [e.event_id for e in requeued] == ["id-1"] and await s.unrouted_count() == 1


# -- PostgreSQL: replicas ----------------------------------------------------------------------------------------


async def test_two_replicas_routing_the_same_events_at_once_route_each_exactly_once_in_order(tmp_path: Path) -> None:
    clock = Clock()
    a = BACKENDS["postgres"].make(tmp_path, clock)
    await a.open()
    b = PostgresStore((tmp_path / "postgres.dsn").read_text(), clock=clock)
    await b.open()
    try:
        n = 120
        for i in range(0, n, 10):  # arriving at either replica while neither knows the Webhook list
            await (a if i % 20 else b).enqueue([ev(j, "ns/a") for j in range(i, i + 10)], routing=UNROUTED)

        async def router(store: Store) -> int:
            routed = 0
            while chunk := await store.unrouted(limit=7):
                result = await store.route_unrouted([(e.seq, ["ns/a"]) for e in chunk])
                routed += sum(1 for seq in result.seqs if seq is not None)
            return routed

        async def intake() -> None:  # and new events keep arriving at a replica that knows the list
            for j in range(n, n + 30):
                await a.enqueue([ev(j, "ns/a")], routing=BEHIND)

        counts = await asyncio.gather(router(a), router(b), intake())
        while await a.unrouted_count():  # the intake may have parked a few after both routers saw none left
            await router(a)
        assert await a.unrouted_count() == 0 and counts[0] + counts[1] <= n + 30
        assert await pending_ids(a, "ns/a") == [f"id-{j}" for j in range(n + 30)]  # each once, in arrival order
    finally:
        await a.close()
        await b.close()
