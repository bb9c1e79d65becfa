"""``ParsedEvents`` driven by random sequences of put/get/parse/keep, including
what the dispatcher never does on purpose (the same seq put twice, seqs put out of order, more takes than uses),
checking after every step that the lagging index never names an entry the cache no longer holds (the ``del`` in
``put`` would raise KeyError), that the cache never holds more than ``size`` counted and ``recent`` uncounted
models, and that every read returns the event of the seq asked for."""

from __future__ import annotations

import random

import pytest

from webhook_operator.api.encoding import compact_json
from webhook_operator.api.events import ChangeEvent
from webhook_operator.delivery.parsed import ParsedEvents
from webhook_operator.store.base import QueuedEvent

from .test_dispatcher import make_event

N = 400
EVENTS = [make_event(i) for i in range(N + 1)]
BODIES = [compact_json(e.wire()) for e in EVENTS]


def entry(seq: int) -> QueuedEvent:
    return QueuedEvent(qid=seq, seq=seq, event_id=EVENTS[seq].id, body=BODIES[seq], received_at=0.0)


def check(cache: ParsedEvents, size: int, recent: int) -> None:
    parsed, lagging, kept = cache._parsed, cache._lagging, cache._recent
    assert set(lagging) <= set(parsed)
    assert len(parsed) <= size and len(kept) <= recent
    assert all(k.uses > 0 for k in parsed.values())
    for seq, k in parsed.items():
        assert k.event.id == EVENTS[seq].id
    for seq, event in kept.items():
        assert event.id == EVENTS[seq].id


@pytest.mark.parametrize("seed", range(60))
def test_random_use_keeps_the_invariants(seed: int) -> None:
    rng = random.Random(seed)
    size, recent = rng.choice([(1, 1), (3, 2), (8, 4), (20, 5), (5, 0), (0, 3)])
    cache = ParsedEvents(size=size, recent=recent)
    newest = 0
    for _ in range(1500):
        op = rng.random()
        if op < 0.35 and newest < N:
            newest += 1
            seq = newest
            cache.put(seq, EVENTS[seq], rng.choice([0, 1, 1, 2, 3]))
        elif op < 0.42 and newest:
            seq = rng.randint(1, newest)  # out of order, or again
            cache.put(seq, EVENTS[seq], rng.choice([0, 1, 2]))
        elif op < 0.80 and newest:
            seq = rng.randint(max(1, newest - 3 * size - 2), newest)
            got = cache.get(entry(seq))
            assert got.id == EVENTS[seq].id
        elif op < 0.92 and newest:
            seq = rng.randint(1, newest)
            assert cache.parse(entry(seq)).id == EVENTS[seq].id
        elif newest:
            seq = rng.randint(1, newest)
            cache.keep(seq, EVENTS[seq])
        check(cache, size, recent)


def test_a_seq_put_again_while_lagging_is_still_evictable() -> None:
    """The one path where a key stays in ``_lagging`` across a replacement in ``_parsed``: harmless."""
    cache = ParsedEvents(size=2, recent=1)
    cache.put(1, EVENTS[1], 2)
    assert cache.get(entry(1)) is EVENTS[1]  # lagging now
    cache.put(1, EVENTS[1], 2)  # replaced in place, still lagging
    cache.put(2, EVENTS[2], 1)
    cache.put(3, EVENTS[3], 1)  # full: evicts the lagging seq 1
    check(cache, 2, 1)
    assert set(cache._parsed) == {2, 3} and not cache._lagging


def test_reads_never_cross_seqs() -> None:
    cache = ParsedEvents(size=2, recent=2)
    cache.put(1, EVENTS[1], 1)
    cache.keep(2, EVENTS[2])
    assert isinstance(cache.parse(entry(3)), ChangeEvent)
    assert [cache.get(entry(s)).id for s in (1, 2, 3, 1)] == [EVENTS[s].id for s in (1, 2, 3, 1)]
