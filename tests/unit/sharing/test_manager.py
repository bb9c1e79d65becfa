"""Three replicas over one in-memory store with a hand-driven clock: leases, takeover, fencing, hand-off, claims."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from webhook_operator.sharing import manager as manager_module
from webhook_operator.sharing.manager import takeover_bound
from webhook_operator.sharing.rendezvous import assign
from webhook_operator.store.base import AttemptOutcome, AttemptQuery, StoreUnavailable

from .replicas import LEASE, Cluster, endpoint, event, target

KEYS = [f"team-{i % 3}/hook-{i}" for i in range(24)]
NAMES = ("r0", "r1", "r2")


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster(NAMES)
    await c.start()
    await c.register(*KEYS)
    await c.tick()  # r0 alone at first takes everything the others do not hold yet …
    await c.tick()  # … and hands each its share: released, then acquired at their next tick
    await c.tick()
    yield c
    await c.close()


def expected(names: tuple[str, ...] | list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {name: set() for name in names}
    for key, owner in assign(KEYS, list(names)).items():
        out[owner].add(key)
    return out


async def test_each_webhook_is_owned_by_exactly_its_rendezvous_winner(cluster: Cluster) -> None:
    owners = cluster.owners()
    assert owners == expected(NAMES)
    assert all(owners[name] for name in NAMES)  # every replica has a share
    leases = {
        lease.webhook: lease.owner for lease in await cluster.store.leases() if lease.expires_at > cluster.clock()
    }
    assert leases == assign(KEYS, list(NAMES))


async def test_events_posted_round_robin_are_delivered_once_each_in_order_by_the_owner(cluster: Cluster) -> None:
    for i in range(30):
        replica = cluster[NAMES[i % 3]]
        await replica.dispatcher.submit([event(i)])
    await cluster.settle()
    winners = assign(KEYS, list(NAMES))
    for key in KEYS:
        assert cluster.delivered(key) == [event(i).id for i in range(30)]  # once each, in acceptance order
        assert cluster.senders(key) == {winners[key]}


async def test_an_own_event_never_overtakes_an_older_one_another_replica_accepted(cluster: Cluster) -> None:
    """Event N accepted by r1, N+1 by the owner right after r1's 202, r1's notification arriving late: the owner
    still sends N first (its own entries are read from the store in commit order, not taken from memory)."""
    owner = cluster["r0"]
    keys = sorted(owner.owned())
    owner.view.lagging = True
    for i in range(0, 20, 2):
        await cluster["r1"].dispatcher.submit([event(i)])
        await owner.dispatcher.submit([event(i + 1)])
        await asyncio.sleep(0)
        owner.view.notify()
    await cluster.settle()
    for key in keys:
        assert cluster.delivered(key) == [event(i).id for i in range(20)]
        assert owner.dispatcher.snapshot(key).pending == 0  # type: ignore[union-attr]


async def test_per_entity_lanes_keep_each_entitys_order_across_replicas_too(cluster: Cluster) -> None:
    """ordering: entity (issue 12) with events of three entities accepted round robin by the three replicas."""
    key = "team-x/entity-hook"
    await cluster.register(key, ordering="entity", maxInFlight=4)
    await cluster.tick()
    owner = next(r for r in cluster.replicas.values() if key in r.owned())
    owner.view.lagging = True
    for i in range(30):
        await cluster[NAMES[i % 3]].dispatcher.submit([event(i, entity=f"entity-{i % 3}")])
        if i % 2:
            owner.view.notify()
    owner.view.notify()
    await cluster.settle()
    sent = cluster.delivered(key)
    assert sorted(sent) == sorted(event(i).id for i in range(30))  # each once
    for entity in range(3):
        mine = [event(i).id for i in range(30) if i % 3 == entity]
        assert [i for i in sent if i in mine] == mine  # each entity's events in acceptance order
    assert owner.dispatcher.snapshot(key).pending == 0  # type: ignore[union-attr]


async def test_a_dead_replicas_webhooks_move_within_the_takeover_bound_and_resume_from_the_held_batch(
    cluster: Cluster,
) -> None:
    victim = sorted(cluster["r2"].owned())[0]
    cluster["r2"].sender.down.add(endpoint(victim))
    await cluster["r0"].dispatcher.submit([event(1), event(2)])
    await cluster.settle()
    assert cluster.delivered(victim) == [event(1).id]  # failed once, held
    died_at = cluster.clock()
    cluster["r2"].alive = False  # SIGKILL: no more renewals, no leave
    cluster.clock.now = died_at + LEASE - 0.5
    await cluster.tick()
    assert victim not in cluster["r0"].owned() | cluster["r1"].owned()  # not before the lease expired
    moved_at = None
    while cluster.clock() < died_at + takeover_bound(LEASE):
        await cluster.advance(0.5, step=0.5)  # ticks as often as we like: the bound must hold anyway
        if victim in cluster["r0"].owned() | cluster["r1"].owned():
            moved_at = cluster.clock()
            break
    assert moved_at is not None and moved_at - died_at <= takeover_bound(LEASE)
    await cluster.settle()
    new_owner = cluster["r0"] if victim in cluster["r0"].owned() else cluster["r1"]
    sent = [ids for replica, url, ids in cluster.log if url == endpoint(victim) and replica == new_owner.name]
    assert sent[0] == [event(1).id]  # the held batch first
    assert cluster.delivered(victim)[-2:] == [event(1).id, event(2).id]  # then the rest, in order
    assert cluster.owners()["r0"] | cluster.owners()["r1"] == set(KEYS)


async def test_takeover_with_regular_ticks_stays_within_fifteen_seconds_by_default() -> None:
    assert takeover_bound(10.0) <= 15.0


async def test_a_paused_replica_loses_its_lanes_and_its_late_completion_is_fenced(cluster: Cluster) -> None:
    paused = cluster["r1"]
    victim = sorted(paused.owned())[0]
    gate = paused.sender.gates[endpoint(victim)] = asyncio.Event()
    await cluster["r0"].dispatcher.submit([event(7)])
    for _ in range(20):
        await asyncio.sleep(0)
    assert endpoint(victim) in paused.sender.started  # in flight at r1 when it froze
    paused.alive = False  # SIGSTOP: it neither ticks nor settles
    await cluster.advance(LEASE + LEASE / 3)
    assert victim in cluster["r0"].owned() | cluster["r2"].owned()
    assert not paused.manager.owns(victim)
    delivered_lines = await cluster.store.attempts(victim, AttemptQuery(outcome=AttemptOutcome.DELIVERED))
    by_new_owner = len(delivered_lines)
    gate.set()  # SIGCONT: its request comes back 200 …
    for _ in range(50):
        await asyncio.sleep(0)
    lines = await cluster.store.attempts(victim, AttemptQuery(outcome=AttemptOutcome.DELIVERED))
    assert len(lines) == by_new_owner  # … and its completion was refused by the fence: nothing recorded
    assert not await paused.claim(victim)  # no status either
    paused.alive = True
    await cluster.tick("r1")  # its first tick: gives up what it lost, keeps (and acquires) only its own share
    assert victim not in paused.owned()
    assert cluster.delivered(victim).count(event(7).id) == 2  # the attempt in flight, and the new owner's


async def test_a_joining_replica_gets_its_share_by_a_clean_hand_off(cluster: Cluster) -> None:
    late = cluster.add("r3")
    await late.start()
    for key in KEYS:
        await late.dispatcher.register(target(key))
    await cluster.tick()
    await cluster.tick()
    assert cluster.owners() == expected([*NAMES, "r3"])
    for i in range(10):
        await cluster[("r0", "r1", "r2", "r3")[i % 4]].dispatcher.submit([event(i)])
    await cluster.settle()
    for key in KEYS:
        assert cluster.delivered(key) == [event(i).id for i in range(10)]


async def test_the_status_claim_drops_a_key_taken_over_by_another_replica(cluster: Cluster) -> None:
    r0 = cluster["r0"]
    mine = sorted(r0.owned())[0]
    assert await r0.claim(mine)
    r0.alive = False
    await cluster.advance(LEASE + LEASE / 3)
    assert not await r0.claim(mine)
    assert not await cluster["r1"].claim(mine) or not await cluster["r2"].claim(mine)
    assert await cluster["r1"].claim(mine) or await cluster["r2"].claim(mine)


async def test_a_replica_that_cannot_reach_the_store_for_the_lease_duration_stops_on_its_own(cluster: Cluster) -> None:
    r2 = cluster["r2"]
    held = r2.owned()
    assert held
    cluster.store.fail_writes = True  # the database is gone (for everybody: nobody renews)
    with pytest.raises(StoreUnavailable):
        await r2.manager.tick()
    assert r2.owned() == held  # not yet: the lease may still be valid
    cluster.clock.now += LEASE
    assert not any(r2.manager.owns(key) for key in held)  # no sends, no writes from this moment
    with pytest.raises(StoreUnavailable):
        await r2.manager.tick()
    await r2.manager.settled()  # the lanes are dropped beside the tick
    assert r2.owned() == set()
    cluster.store.fail_writes = False
    await cluster.tick()
    await cluster.tick()
    assert cluster.owners() == expected(NAMES)  # back, same shares


async def test_a_clean_shutdown_hands_over_at_the_next_tick(cluster: Cluster) -> None:
    r1 = cluster["r1"]
    await r1.manager.stop()
    await r1.dispatcher.stop()
    await r1.manager.leave()
    r1.alive = False
    await cluster.tick()  # r1 left the live set: its share is free now, not after the lease duration
    await cluster.tick()
    assert cluster.owners()["r0"] | cluster.owners()["r2"] == set(KEYS)


async def test_only_the_owner_acts_on_an_annotation_and_the_next_owner_asks_again_while_it_waits(
    cluster: Cluster,
) -> None:
    key = sorted(cluster["r1"].owned())[0]
    assert [cluster[n].manager.acts_on(key) for n in NAMES] == [False, True, False]
    assert cluster["r0"].manager.owner_address(key) == ("r1", "r1.test:8080")  # where its operations go
    late = cluster.add("r3")
    await late.start()
    for k in KEYS:
        await late.dispatcher.register(target(k))
    await late.manager.tick()  # r3 sees itself win some webhooks r0..r2 still hold
    moving = sorted(k for k, o in assign(KEYS, [*NAMES, "r3"]).items() if o == "r3")
    assert moving
    old = assign(KEYS, list(NAMES))[moving[0]]
    assert late.manager.acts_on(moving[0]) is None  # kopf retries it on r3 …
    assert cluster[old].manager.acts_on(moving[0]) is True  # … while the old owner still does it
    await cluster.tick()
    await cluster.tick()
    assert late.manager.acts_on(moving[0]) is True and cluster[old].manager.acts_on(moving[0]) is False


async def test_thousands_of_webhooks_are_taken_a_batch_per_tick_and_renewals_never_wait_for_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(manager_module, "TAKE_BATCH", 50)
    solo = Cluster(["r0"])
    await solo.start()
    keys = [f"bulk/hook-{i:04d}" for i in range(230)]
    await solo.register(*keys)
    owned_after = []
    tokens: dict[str, int] = {}
    for _ in range(6):
        await solo.tick()
        owned_after.append(len(solo["r0"].owned()))
        held = {k: t for k in keys if (t := solo["r0"].manager.token(k)) is not None}
        assert all(held[k] == t for k, t in tokens.items())  # every renewal kept its token
        tokens = held
    assert owned_after == [50, 100, 150, 200, 230, 230]
    await solo.close()


async def test_a_hand_over_lets_the_attempt_in_flight_finish_so_nothing_is_sent_twice(cluster: Cluster) -> None:
    late = cluster.add("r3")
    await late.start()
    for k in KEYS:
        await late.dispatcher.register(target(k))
    moving = sorted(k for k, o in assign(KEYS, [*NAMES, "r3"]).items() if o == "r3")[0]
    old = cluster[assign(KEYS, list(NAMES))[moving]]
    gate = old.sender.gates[endpoint(moving)] = asyncio.Event()
    await cluster["r0"].dispatcher.submit([event(1), event(2)])
    for _ in range(20):
        await asyncio.sleep(0)
    assert endpoint(moving) in old.sender.started
    await late.manager.tick()  # r3 is live now: the old owner will hand ``moving`` over at its next tick
    await old.manager.tick()  # renews everything (``moving`` too) and starts the hand-over beside it
    assert old.manager.owns(moving) and not old.manager.may_send(moving)
    handing = asyncio.ensure_future(old.manager.settled())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not handing.done()  # waiting for the request in flight …
    gate.set()  # … which answers: its completion commits under the lease, and no new batch starts
    await handing
    assert moving not in old.owned()
    await cluster.tick()
    await cluster.settle()
    assert moving in late.owned()
    assert cluster.delivered(moving) == [event(1).id, event(2).id]  # once each: ev-1 by the old owner, ev-2 by r3
    assert cluster.senders(moving) == {old.name, "r3"}
    lines = await cluster.store.attempts(moving, AttemptQuery(outcome=AttemptOutcome.DELIVERED))
    assert [list(line.event_ids) for line in lines] == [[event(1).id], [event(2).id]]
