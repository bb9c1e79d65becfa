"""Deferred routing (``delivery.unrouted``, issue 15 intake availability): an operator that does not know the
Webhook list yet accepts events unrouted and, once it knows the list, delivers them in arrival order, exactly once,
with nothing that arrives meanwhile overtaking them — across a restart too. On the real SQLite store (a restart is
a new graph on the same file) with a sender that records requests instead of sending them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from webhook_operator.delivery.dispatcher import Dispatcher
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.graph import Graph, build_graph
from webhook_operator.store.memory import MemoryStore
from webhook_operator.store.sqlite import SqliteStore

from .fakes import ScriptedSender
from .test_dispatcher import make_event, target

URL = "http://receiver.example/hook"


class Engine:
    """A graph that starts without the Webhook list, on one SQLite file (or a given store), restartable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sender = ScriptedSender()

    async def start(self, store: MemoryStore | None = None) -> Dispatcher:
        self.graph: Graph = build_graph(store=store or SqliteStore(self.path), sender=self.sender,
                                        retry=RetryPolicy((0.05,)), webhooks_known=False)  # fmt: skip
        await self.graph.open()
        return self.graph.dispatcher

    async def stop(self) -> None:
        await self.graph.close()

    def delivered(self) -> list[int]:
        """The numbers of the delivered events, in delivery order."""
        return [int(event_id.rsplit("-", 1)[1]) for batch in self.sender.batches() for event_id in batch]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    e = Engine(tmp_path / "store.db")
    await e.start()
    yield e
    await e.stop()


async def test_events_accepted_before_the_list_is_known_are_delivered_in_order_once_it_is(engine: Engine) -> None:
    d = engine.graph.dispatcher
    early = await d.submit([make_event(i) for i in range(5)])
    assert (early.accepted, early.queued) == (5, 0)  # accepted, durably, but routed nowhere yet
    await d.register(target(URL, batch=3))  # a kopf handler may register a webhook before the list is read
    await d.submit([make_event(i) for i in range(5, 8)] + [make_event(99, entity_type="dashboard")])
    await asyncio.sleep(0.05)
    assert engine.sender.requests == [] and await engine.graph.store.unrouted_count() == 9
    assert not d.delivering
    d.webhooks_known()
    late = await d.submit([make_event(i) for i in range(8, 12)])  # arrives while the unrouted ones are routed
    assert late.accepted == 4
    await d.idle()
    assert engine.delivered() == list(range(12))  # in arrival order; the dashboard event matched nothing
    assert await engine.graph.store.unrouted_count() == 0 and d.delivering
    direct = await d.submit([make_event(12)])  # nothing waits any more: routed and queued at once
    assert direct.queued == 1
    await d.idle()
    assert engine.delivered() == list(range(13))


async def test_nothing_arriving_during_the_switch_overtakes_an_unrouted_event(engine: Engine) -> None:
    d = engine.graph.dispatcher
    await d.register(target(URL, batch=50))
    n = 1300  # more than two routing chunks
    for i in range(0, n, 100):
        await d.submit([make_event(j) for j in range(i, i + 100)])
    d.webhooks_known()

    async def arrivals() -> None:
        for j in range(n, n + 200):
            await d.submit([make_event(j)])

    await arrivals()
    await d.idle()
    assert engine.delivered() == list(range(n + 200))


async def test_a_crash_after_the_202_and_before_routing_loses_and_repeats_nothing(engine: Engine) -> None:
    d = engine.graph.dispatcher
    await d.submit([make_event(i) for i in range(6)])
    await engine.stop()  # the process ends before the API server answered: nothing was routed
    d = await engine.start()
    assert await engine.graph.store.unrouted_count() == 6
    await d.submit([make_event(6)])
    await d.register(target(URL))
    d.webhooks_known()
    await d.idle()
    assert engine.delivered() == list(range(7))
    await engine.stop()  # and after routing, a restart routes nothing twice
    d = await engine.start()
    await d.register(target(URL))
    d.webhooks_known()
    await d.idle()
    assert engine.delivered() == list(range(7))


async def test_a_duplicate_of_an_unrouted_event_is_accepted_once(engine: Engine) -> None:
    d = engine.graph.dispatcher
    await d.register(target(URL))
    assert (await d.submit([make_event(1), make_event(1)])).duplicates == 1
    d.webhooks_known()
    again = await d.submit([make_event(1), make_event(2)])  # the later copy arrives routed: still once
    assert (again.accepted, again.duplicates) == (1, 1)
    await d.idle()
    assert engine.delivered() == [1, 2]
    assert (await d.submit([make_event(2)])).duplicates == 1


async def test_routing_that_fails_on_a_store_outage_is_retried(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "unused")
    store = MemoryStore()
    d = await engine.start(store)
    try:
        await d.register(target(URL))
        await d.submit([make_event(i) for i in range(3)])
        store.fail_writes = True
        d.webhooks_known()
        await asyncio.sleep(0.2)
        assert engine.sender.requests == [] and await store.unrouted_count() == 3
        store.fail_writes = False
        await d.idle(within=10)
        assert engine.delivered() == [0, 1, 2]
    finally:
        await engine.stop()
