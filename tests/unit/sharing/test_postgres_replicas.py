"""Two replicas on a real PostgreSQL (two pools, two fences, LISTEN/NOTIFY), in real time with a short lease."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from support import postgres
from webhook_operator.graph import Graph, build_graph
from webhook_operator.sharing import manager as manager_module
from webhook_operator.sharing.manager import LeaseManager, takeover_bound
from webhook_operator.store.base import AttemptOutcome, AttemptQuery
from webhook_operator.store.postgres import PostgresStore

from .replicas import POLICY, Sender, endpoint, event, target

LEASE = 1.5  # the takeover test's: short, so it is quick
STEADY = 6.0  # the delivery test's: a tick delayed by a loaded machine must not move webhooks mid-test
KEYS = [f"ns/hook-{i}" for i in range(8)]
Log = list[tuple[str, str, list[str]]]


class PgReplica:
    def __init__(self, name: str, dsn: str, log: list[tuple[str, str, list[str]]], lease: float) -> None:
        self.name = name
        self.store = PostgresStore(dsn)
        self.sender = Sender(log, name)
        self.graph: Graph = build_graph(store=self.store, sender=self.sender, retry=POLICY, shared=True)
        self.frozen: float | None = None  # its clock stops here: it believes its leases valid (only fencing helps)
        self.manager = LeaseManager(self.store, self.graph.dispatcher, replica=name, lease_duration=lease,
                                    clock=lambda: time.monotonic() if self.frozen is None else self.frozen)  # fmt: skip

    async def start(self) -> None:
        await self.graph.open()
        for key in KEYS:
            await self.graph.dispatcher.register(target(key))
        await self.manager.start()

    def owned(self) -> set[str]:
        return set(self.graph.dispatcher.owned())

    async def close(self) -> None:
        await self.manager.stop()
        await self.graph.close()


async def until(predicate: Callable[[], bool], within: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < within, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
async def pair(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[PgReplica, PgReplica, Log]]:
    monkeypatch.setattr(manager_module, "POLL_EVERY", 3600.0)  # only notifications wake a lane here
    lease = float(request.param)
    dsn = postgres.fresh_database()
    log: list[tuple[str, str, list[str]]] = []
    a, b = PgReplica("a", dsn, log, lease), PgReplica("b", dsn, log, lease)
    await a.start()
    await b.start()
    await until(lambda: a.owned() | b.owned() == set(KEYS) and not a.owned() & b.owned() and bool(b.owned()),
                within=3 * lease, what="the webhooks split between the two")  # fmt: skip
    yield a, b, log
    for r in (a, b):
        await r.close()


@pytest.mark.parametrize("pair", [STEADY], indirect=True)
async def test_events_accepted_by_either_replica_are_delivered_once_in_order_woken_by_notifications(
    pair: tuple[PgReplica, PgReplica, Log],
) -> None:
    a, b, log = pair
    for i in range(20):
        await (a if i % 2 else b).graph.dispatcher.submit([event(i)])

    def sent(key: str) -> list[str]:
        return [i for _, url, ids in log if url == endpoint(key) for i in ids]

    await until(lambda: all(len(sent(k)) >= 20 for k in KEYS), within=5, what="every event delivered")
    for key in KEYS:
        assert sent(key) == [event(i).id for i in range(20)]
        assert {r for r, url, _ in log if url == endpoint(key)} == ({"a"} if key in a.owned() else {"b"})


@pytest.mark.parametrize("pair", [LEASE], indirect=True)
async def test_a_replica_that_stops_renewing_is_taken_over_within_the_bound_and_fenced(
    pair: tuple[PgReplica, PgReplica, Log],
) -> None:
    a, b, log = pair
    victim = sorted(b.owned())[0]
    gate = b.sender.gates[endpoint(victim)] = asyncio.Event()
    await a.graph.dispatcher.submit([event(1)])
    await until(lambda: endpoint(victim) in b.sender.started, within=3, what="b sending")
    await b.manager.stop()  # frozen: no renewals, no leave (its lanes keep running: fencing must stop them)
    b.frozen = time.monotonic()  # … and by its own clock its leases never run out: only the store's fence is left
    stopped = time.monotonic()
    await until(lambda: victim in a.owned(), within=takeover_bound(LEASE) + 1.0, what="a taking over")
    assert time.monotonic() - stopped <= takeover_bound(LEASE) + 1.0  # + a loaded machine's scheduling slack
    await until(lambda: any(r == "a" and url == endpoint(victim) for r, url, _ in log), within=3, what="a sending")
    gate.set()  # b's request answers 200 now: its completion must be refused
    await asyncio.sleep(0.5)
    lines = await a.store.attempts(victim, AttemptQuery(outcome=AttemptOutcome.DELIVERED))
    assert [list(line.event_ids) for line in lines] == [[event(1).id]]  # once, by a
    assert b.sender.log.count((b.name, endpoint(victim), [event(1).id])) == 1  # and b sent nothing more
