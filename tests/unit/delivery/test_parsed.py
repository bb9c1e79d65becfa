"""The parsed-event cache (``delivery.parsed``): lanes take the events the intake parsed instead of parsing their
stored bodies again — also for a backlog larger than the cache, which a first-in-first-out cache re-parsed whole
(lanes read oldest first, so it evicted exactly the entry needed next)."""

from __future__ import annotations

from webhook_operator.delivery.parsed import ParsedEvents

from .fakes import SqliteEngine, queued
from .test_dispatcher import make_event, target

URL = "http://receiver.example/hook"


def test_a_backlog_larger_than_the_cache_parses_only_what_did_not_fit(parses: list[bytes | str]) -> None:
    cache = ParsedEvents(size=20)
    events = [make_event(i) for i in range(30)]
    for seq, event in enumerate(events, start=1):
        cache.put(seq, event, uses=1)  # the intake: 30 accepted before the lane takes the first
    got = [cache.get(queued(seq, event)) for seq, event in enumerate(events, start=1)]  # the lane, oldest first
    assert [e.id for e in got] == [e.id for e in events]
    assert (cache.hits, cache.misses, cache.refused) == (20, 10, 10)  # a FIFO cache: 0 hits, 30 parses
    assert len(parses) == 10
    assert len(cache) == 0  # every kept event was taken by its one lane


def test_an_event_is_kept_until_every_lane_it_was_queued_to_has_taken_it(parses: list[bytes | str]) -> None:
    cache = ParsedEvents(size=10)
    event = make_event(1)
    cache.put(7, event, uses=3)
    assert all(cache.get(queued(7, event)) is event for _ in range(3))
    assert (len(cache), parses) == (0, [])
    again = cache.get(queued(7, event))  # a fourth taker (a batch retried): parsed from the store, not kept
    assert again == event and again is not event
    assert (len(cache), len(parses), cache.misses) == (0, 1, 1)


def test_events_no_lane_takes_are_not_kept_and_routing_reads_without_taking() -> None:
    cache = ParsedEvents(size=10)
    event = make_event(1)
    cache.put(1, event, uses=0)
    assert len(cache) == 0
    cache.put(2, event, uses=1)
    assert cache.parse(queued(2, event)) is event and len(cache) == 1  # the deferred router only reads it
    assert cache.get(queued(2, event)) is event and len(cache) == 0


def test_entries_left_behind_never_block_the_cache_for_long() -> None:
    """A lane deleted (or its events paged out) never takes what was kept for it: once 2 x size newer events were
    accepted, such entries make room again; the cache never holds more than its size."""
    cache = ParsedEvents(size=5)
    event = make_event(1)
    for seq in range(1, 6):
        cache.put(seq, event, uses=1)  # never taken
    for seq in range(6, 11):
        cache.put(seq, event, uses=1)
        assert len(cache) == 5
    assert cache.refused == 5  # still within 2 x size of the newest: they may yet be taken
    cache.put(11, event, uses=1)  # seq 1 is now 10 = 2 x size behind
    assert len(cache) == 5 and cache.parse(queued(11, event)) is event
    kept = set()
    for seq in range(12, 40):
        cache.put(seq, event, uses=1)
        assert len(cache) <= 5
        kept |= {s for s in range(seq + 1) if cache.parse(queued(s, event)) is event}
    assert kept >= {11, 12, 13, 14, 15, 21, 31, 35}  # whatever nothing takes is replaced, 2 x size later


async def test_lanes_of_a_fan_out_deliver_what_the_intake_parsed_without_parsing_it_again(
    sqlite_engine: SqliteEngine, parses: list[bytes | str]
) -> None:
    d = sqlite_engine.graph.dispatcher
    for n in range(3):
        await d.register(target(f"{URL}/{n}", name=f"ns/hook-{n}", batch=2))
    events = [make_event(i) for i in range(10)]
    result = await d.submit(events)
    assert (result.accepted, result.queued) == (10, 30)
    await d.idle(within=10)
    assert sorted(sqlite_engine.sender.urls()) == sorted(f"{URL}/{n}" for n in range(3) for _ in range(5))
    for n in range(3):
        sent = [i for url, batch in zip(sqlite_engine.sender.urls(), sqlite_engine.sender.batches(), strict=True)
                if url == f"{URL}/{n}" for i in batch]  # fmt: skip
        assert sent == [e.id for e in events]
    assert parses == []  # no lane parsed a stored body
