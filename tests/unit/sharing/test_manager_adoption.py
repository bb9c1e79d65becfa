"""Renewals stay on time however long adopting lanes takes (the 1,000-webhook bench lost every lease when a tick
adopted 500 lanes before its next renewal), and a webhook lost or handed over while its lane is being read does
not end up delivering here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from webhook_operator.sharing import manager as manager_module
from webhook_operator.sharing.manager import ADOPT_CONCURRENCY
from webhook_operator.sharing.rendezvous import assign

from .replicas import LEASE, Cluster, Replica, event, target

KEYS = [f"team-{i % 3}/hook-{i}" for i in range(40)]


class SlowAdoption:
    """Wraps a replica's ``adopt``: every adoption waits for ``gate`` (a lane whose store reads take long)."""

    def __init__(self, replica: Replica, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = asyncio.Event()
        self.running = self.most = 0
        self.waiting: set[str] = set()
        self._adopt = replica.dispatcher.adopt
        monkeypatch.setattr(replica.dispatcher, "adopt", self)

    async def __call__(self, key: str) -> bool:
        self.running += 1
        self.most = max(self.most, self.running)
        self.waiting.add(key)
        try:
            await self.gate.wait()
            return await self._adopt(key)
        finally:
            self.running -= 1
            self.waiting.discard(key)


@pytest.fixture
async def pair() -> AsyncIterator[Cluster]:
    c = Cluster(["r0", "r1"])
    await c.start("r0")
    yield c
    await c.close()


async def test_renewals_go_on_while_adoptions_take_several_lease_durations(
    pair: Cluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    r0 = pair["r0"]
    slow = SlowAdoption(r0, monkeypatch)
    for key in KEYS:
        await r0.dispatcher.register(target(key))
    await asyncio.wait_for(r0.manager.tick(), 5)  # takes all 40 and returns: the lanes are read beside it
    assert all(r0.manager.owns(key) for key in KEYS)
    assert r0.owned() == set()  # no lane read yet: nothing is delivered …
    assert r0.manager.acts_on(KEYS[0]) is None  # … and operations wait for it
    for _ in range(9):  # the reads take three lease durations; the regular ticks renew meanwhile
        pair.clock.now += LEASE / 3
        await asyncio.wait_for(r0.manager.tick(), 5)
        assert all(r0.manager.owns(key) for key in KEYS)
    assert 0 < slow.most <= ADOPT_CONCURRENCY  # a bounded number of lanes read at once
    await r0.dispatcher.submit([event(1)])
    slow.gate.set()
    await r0.manager.settled()
    await pair.settle()
    assert r0.owned() == set(KEYS)
    assert r0.manager.acts_on(KEYS[0]) is True
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]  # no lease ever lapsed
    for key in KEYS:
        assert pair.delivered(key) == [event(1).id]


async def test_webhooks_handed_over_while_their_lanes_are_read_do_not_stay_with_the_old_replica(
    pair: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    r0, r1 = pair["r0"], pair["r1"]
    slow = SlowAdoption(r0, monkeypatch)
    keys = [f"hand/hook-{i:02d}" for i in range(40)]  # of the first four read, one is r1's: ``adopt`` is under way
    winners = assign(keys, ["r0", "r1"])
    for key in keys:
        await r0.dispatcher.register(target(key))
    await asyncio.wait_for(r0.manager.tick(), 5)  # r0 is alone in the live set: takes all 40, adopts none yet
    assert all(r0.manager.owns(key) for key in keys)
    await r1.start()  # r1 is live now; what it wins is still r0's lease
    for key in keys:
        await r1.dispatcher.register(target(key))
    await r1.manager.tick()
    await r1.manager.settled()
    await asyncio.wait_for(r0.manager.tick(), 5)  # hands r1's share over: some queued, some inside ``adopt``
    await asyncio.wait_for(asyncio.shield(settled_except_adoptions(r0)), 5)
    await r1.manager.tick()
    await r1.manager.settled()
    assert {winners[k] for k in slow.waiting} == {"r0", "r1"}
    slow.gate.set()  # the reads answer: a handed-over one is dropped again at once, the others deliver
    await r0.manager.settled()
    assert r0.owned() == {k for k, w in winners.items() if w == "r0"}
    assert r1.owned() == {k for k, w in winners.items() if w == "r1"}
    await r0.dispatcher.submit([event(2)])
    await pair.settle()
    for key in keys:
        assert pair.delivered(key) == [event(2).id]  # once, by its one owner
        assert pair.senders(key) == {winners[key]}


async def test_registrations_in_a_burst_share_a_few_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thousand kopf registrations were a thousand ticks 50 ms apart, each renewing every lease."""
    monkeypatch.setattr(manager_module, "NUDGE_GAP", 0.2)
    solo = Cluster(["r0"])
    r0 = solo["r0"]
    await r0.graph.open()
    ticks = 0
    tick = r0.manager.tick

    async def counted() -> None:
        nonlocal ticks
        ticks += 1
        await tick()

    monkeypatch.setattr(r0.manager, "tick", counted)
    await r0.manager.start()  # ticking (lease 9 s: the regular tick is 3 s away)
    ticks = 0
    loop = asyncio.get_running_loop()
    began = loop.time()
    for i in range(120):  # 120 registrations over about 0.6 s
        await r0.dispatcher.register(target(f"burst/hook-{i}"))
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.3)
    elapsed = loop.time() - began
    assert 1 <= ticks <= elapsed / 0.2 + 2
    await r0.manager.settled()
    assert len(r0.owned()) == 120
    await solo.close()


async def settled_except_adoptions(replica: Replica) -> None:
    """The hand-overs and drops started so far (the gated adoptions would never finish)."""
    manager = replica.manager
    while pending := [*manager._handing, *manager._dropping]:
        await asyncio.gather(*pending, return_exceptions=True)
