"""Adversarial checks of the use-counted parsed-event cache (``delivery.parsed``), from a review of its first version.

Those marked REGRESSION failed on that first version (which refused new entries whenever full, took a use in the
entity keyer and kept no misses) and passed with the FIFO cache before it (kept below, verbatim, as the baseline);
the others document properties that hold."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path

import pytest

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookSpec
from webhook_operator.delivery.parsed import ParsedEvents
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.graph import build_graph
from webhook_operator.store.base import QueuedEvent
from webhook_operator.store.sqlite import SqliteStore

from .fakes import ScriptedSender, SqliteEngine, queued
from .test_dispatcher import make_event, target, until

URL = "http://receiver.example/hook"


class FifoParsedEvents:
    """The cache before e99eeb5 (first in, first out; misses kept), for the baseline numbers."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._parsed: OrderedDict[int, ChangeEvent] = OrderedDict()
        self.misses = 0

    def put(self, seq: int, event: ChangeEvent) -> None:
        self._parsed[seq] = event
        if len(self._parsed) > self._size:
            self._parsed.popitem(last=False)

    def get(self, entry: QueuedEvent) -> ChangeEvent:
        event = self._parsed.get(entry.seq)
        if event is None:
            self.misses += 1
            event = ChangeEvent.model_validate_json(entry.body)
            self.put(entry.seq, event)
        return event


def ordered_target(url: str, *, name: str, ordering: str, batch: int = 1) -> WebhookTarget:
    spec = WebhookSpec.model_validate({
        "webhookType": "Generic", "batchSize": batch,
        "eventFilters": [{"eventType": "entityCreated", "entities": ["table"]}],
        "webhookConfig": {"endpoint": url, "timeout": 5},
        "delivery": {"ordering": ordering, "maxInFlight": 4},
    })  # fmt: skip
    return WebhookTarget(key=name, spec=spec)


# -- 1. ordering entity: the keyer takes the lane's one use --------------------------------------------------------


@pytest.mark.parametrize("ordering", ["entity", "none"])
async def test_an_ordered_lane_delivers_what_the_intake_parsed_without_parsing_it_again(
    sqlite_engine: SqliteEngine, parses: list[bytes | str], ordering: str
) -> None:
    """REGRESSION (fails for ``entity``): ``ordering.keyer`` reads each entry with ``ParsedEvents.get`` when the
    entry is appended to a KeyedQueue — that *takes* the lane's one use and removes the entry, so the batch's
    ``decode`` misses and parses every event again. Before e99eeb5 both reads were hits (0 parses)."""
    d = sqlite_engine.graph.dispatcher
    await d.register(ordered_target(URL, name="ns/hook", ordering=ordering))
    events = [make_event(i) for i in range(10)]
    assert (await d.submit(events)).queued == 10
    await d.idle(within=10)
    assert sorted(i for batch in sqlite_engine.sender.batches() for i in batch) == sorted(e.id for e in events)
    assert len(parses) == 0, f"{len(parses)} parses for 10 events the intake parsed"


async def test_an_entity_lane_beside_a_webhook_lane_leaves_both_parsing_nothing(
    sqlite_engine: SqliteEngine, parses: list[bytes | str]
) -> None:
    """REGRESSION: with an entity lane and a webhook-ordered lane on the same events, the entity lane's keyer and
    its decode take both uses, so the *other* lane parses every event too: 2 parses per event, 0 before."""
    d = sqlite_engine.graph.dispatcher
    await d.register(ordered_target(f"{URL}/a", name="ns/a", ordering="entity"))
    await d.register(target(f"{URL}/b", name="ns/b"))
    events = [make_event(i) for i in range(10)]
    assert (await d.submit(events)).queued == 20
    await d.idle(within=10)
    assert len(sqlite_engine.sender.requests) == 20
    assert len(parses) == 0, f"{len(parses)} parses for 10 events the intake parsed"


# -- 2. one stuck lane in a fan-out ------------------------------------------------------------------------------


def test_one_stuck_lane_among_many_costs_the_flowing_lanes_no_more_parses_than_fifo(parses: list[bytes | str]) -> None:
    """REGRESSION, the policy alone: 20 lanes get every event; 19 take each one at once, one never does (a
    receiver down for hours, a lane paused). Once ``size`` events wait for the stuck lane, the cache refuses every
    new event until ``2 * size`` later — then accepts ``size``, refuses ``size``, ... So the 19 flowing lanes parse
    about half of all events, 19 times each. The FIFO cache: 0 parses (the stuck lane's old entries fall out)."""
    size, lanes, n = 50, 20, 1000
    events = [make_event(i) for i in range(n)]
    entries = [queued(seq, e) for seq, e in enumerate(events, start=1)]
    cache, fifo = ParsedEvents(size=size), FifoParsedEvents(size=size)
    for seq, (event, e) in enumerate(zip(events, entries, strict=True), start=1):
        cache.put(seq, event, uses=lanes)
        fifo.put(seq, event)
        for _ in range(lanes - 1):  # the flowing lanes
            assert cache.get(e).id == event.id
            assert fifo.get(e).id == event.id
    assert fifo.misses == 0
    assert len(cache) <= size  # memory stays bounded: that part holds
    # 1000 events: refused 51..100, 151..200, ... (about n/2), each parsed by 19 lanes
    assert cache.misses == fifo.misses, f"refused {cache.refused}, flowing lanes parsed {cache.misses} times"


async def test_a_stuck_lane_in_a_fan_out_leaves_the_flowing_lanes_parsing_nothing(
    sqlite_engine: SqliteEngine, parses: list[bytes | str]
) -> None:
    """REGRESSION, end to end: three webhooks, one receiver hangs on its first request (its lane keeps its
    queue). The cache (made small here: 10) fills with the stuck lane's entries and refuses what the two flowing
    lanes need next; they parse it. FIFO: they never parsed (only the stuck lane parsed its backlog, once)."""
    d = sqlite_engine.graph.dispatcher
    d._parsed._size = 10  # the one cache the lanes share (DEFAULT_SIZE is bound at definition time)
    sqlite_engine.sender.gates[f"{URL}/0"] = asyncio.Event()  # never set: hook-0 is stuck
    for n in range(3):
        await d.register(target(f"{URL}/{n}", name=f"ns/hook-{n}"))

    submitted = 0

    def flowed() -> bool:  # hook-1 and hook-2 delivered everything submitted so far
        return sum(1 for u in sqlite_engine.sender.urls() if not u.endswith("/0")) >= 2 * submitted

    for i in range(0, 60, 5):
        await d.submit([make_event(j) for j in range(i, i + 5)])
        submitted += 5
        await until(flowed)
    while_stuck = len(parses)
    sqlite_engine.sender.gates[f"{URL}/0"].set()
    await d.idle(within=10)
    # FIFO (e99eeb5^): 0 while stuck, 59 in all (the stuck lane's backlog, once); e99eeb5: 58 while stuck, 107
    assert while_stuck == 0, f"flowing lanes parsed {while_stuck} times; {len(parses)} parses in all for 60 events"


# -- 3. a backlog paged in after a restart ------------------------------------------------------------------------


async def test_a_backlog_read_by_several_lanes_after_a_restart_is_parsed_once(
    tmp_path: Path, parses: list[bytes | str]
) -> None:
    """REGRESSION: after a restart nothing is in the cache; three lanes read the same 30 queued events from the
    store. The FIFO cache kept the first lane's parse for the other two (30 parses); now a miss is not kept and
    every lane parses its own copy (90)."""
    first = SqliteEngine(tmp_path / "store.db")
    d = (await first.start()).dispatcher
    for n in range(3):
        first.sender.gates[f"{URL}/{n}"] = asyncio.Event()  # nothing is delivered before the restart
        await d.register(target(f"{URL}/{n}", name=f"ns/hook-{n}"))
    assert (await d.submit([make_event(i) for i in range(30)])).queued == 90
    await first.graph.close()

    second = SqliteEngine(tmp_path / "store.db")
    d = (await second.start()).dispatcher
    try:
        parses.clear()
        for n in range(3):
            await d.register(target(f"{URL}/{n}", name=f"ns/hook-{n}"))
        await d.idle(within=10)
        assert len(second.sender.requests) >= 90
        assert len(parses) <= 30, f"{len(parses)} parses of 30 stored events"
    finally:
        await second.graph.close()


# -- 4. events accepted before the Webhook list is known -----------------------------------------------------------


async def test_events_accepted_unrouted_are_not_parsed_again_by_the_router(
    tmp_path: Path, parses: list[bytes | str]
) -> None:
    """REGRESSION: an event stored unrouted (the operator's start-up) is queued nowhere, so ``_deliver`` puts it
    with 0 uses (not kept); the deferred router's ``parse`` then misses and parses every one. The FIFO cache kept
    what the intake parsed: 0 parses."""
    graph = build_graph(store=SqliteStore(tmp_path / "s.db"), sender=ScriptedSender(), webhooks_known=False)
    await graph.open()
    try:
        d = graph.dispatcher
        assert (await d.submit([make_event(i) for i in range(10)])).queued == 0
        await d.register(target(URL, name="ns/hook"))
        d.webhooks_known()
        await until(lambda: d._unrouted.routed >= 10)
        await d.idle(within=10)
        assert len(parses) == 0, f"{len(parses)} parses for 10 events the intake parsed"
    finally:
        await graph.close()


# -- properties that hold ----------------------------------------------------------------------------------------


def test_the_cache_never_holds_more_than_its_size_whatever_the_seq_order() -> None:
    """Holds: seqs out of put order (PostgreSQL commits, the deferred router's older seqs) and entries never
    taken never grow the cache past ``size``; a refused or evicted event is parsed from its own body, so a lane
    never gets another event's model."""
    cache = ParsedEvents(size=8)
    events = {seq: make_event(seq) for seq in range(1, 200)}
    order = [s for block in range(0, 199, 10) for s in reversed(range(block + 1, min(block + 11, 200)))]
    for seq in order:
        cache.put(seq, events[seq], uses=2)
        assert len(cache) <= 8
    for seq in range(1, 200):
        assert cache.get(queued(seq, events[seq])).id == events[seq].id


def test_an_out_of_order_put_delays_eviction_of_stale_entries() -> None:
    """Holds, but costs: eviction walks insertion order and stops at the first entry not yet stale, so one newer
    seq put first (a PostgreSQL transaction that committed before an older one) keeps stale entries behind it."""
    cache = ParsedEvents(size=4)
    event = make_event(1)
    cache.put(100, event, uses=1)  # committed first, never taken
    for seq in (1, 2, 3):  # older seqs committed after it, never taken
        cache.put(seq, event, uses=1)
    for seq in range(101, 108):  # 1, 2, 3 are more than 2 x size behind 107, but 100 (first) is not
        cache.put(seq, event, uses=1)
    assert cache.refused == 7 and len(cache) == 4
