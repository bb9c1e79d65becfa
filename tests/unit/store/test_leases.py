"""The lease contract (``LeaseStore``, issue 15): liveness, one lease per webhook, tokens, and fencing of every lane
write, on every backend in ``_backends.BACKENDS``.

Two "replicas" share one store here, as two replicas share one PostgreSQL database: the in-memory store and SQLite
must behave exactly like PostgreSQL, because the replica-side engine is unit-tested against the in-memory store.
Time passes by the backend's own clock: the test clock for memory and SQLite, real waits for PostgreSQL (whose
leases run on the database server's clock, never the test's), so short leases are ``SHORT`` seconds long there.
What only PostgreSQL has (concurrent takeovers racing a write, notifications between replicas) is at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import postgres
from webhook_operator.store.base import (
    AttemptOutcome,
    AttemptQuery,
    Lease,
    LeaseLost,
    QueuedEvent,
    RetryState,
    Store,
)
from webhook_operator.store.postgres import PostgresStore

from ._backends import BACKENDS, Backend, Clock, ev, record

DELIVERED, FAILED, SKIPPED = AttemptOutcome.DELIVERED, AttemptOutcome.FAILED, AttemptOutcome.SKIPPED
REQUEUED = AttemptOutcome.REDELIVERY_QUEUED
SHORT = 1.0  # a lease meant to lapse during the test (PostgreSQL: real seconds, so ample on a loaded machine)
LONG = 60.0  # a lease meant to stay live for the whole test, however slow the machine
A, B = "replica-a", "replica-b"
W, X = "ns/w", "ns/x"


@dataclass
class Held:
    """A fence: the leases one replica believes it holds (what the lease engine keeps)."""

    replica: str
    tokens: dict[str, int] = field(default_factory=dict)

    def token(self, webhook: str) -> int | None:
        return self.tokens.get(webhook)


@dataclass
class Harness:
    name: str
    backend: Backend
    clock: Clock
    store: Store

    async def lapse(self, seconds: float = SHORT) -> None:
        """Let ``seconds`` pass by the store's clock (and then a little, so a lease of that length has expired)."""
        if self.name == "postgres":
            await asyncio.sleep(seconds + 0.1)
        else:
            self.clock.advance(seconds + 0.1)


@pytest.fixture(params=sorted(BACKENDS))
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    backend, clock = BACKENDS[request.param], Clock()
    store = backend.make(tmp_path, clock)
    await store.open()
    harness = Harness(request.param, backend, clock, store)
    yield harness
    await harness.store.close()


# -- liveness ------------------------------------------------------------------------------------------------


async def test_heartbeat_returns_the_live_replicas_sorted_with_their_addresses(h: Harness) -> None:
    s = h.store
    [me] = await s.heartbeat(B, SHORT, "10.0.0.2:8080")
    assert (me.replica_id, me.address) == (B, "10.0.0.2:8080")
    live = await s.heartbeat(A, LONG)
    assert [(r.replica_id, r.address) for r in live] == [(A, None), (B, "10.0.0.2:8080")]
    assert live[1].heartbeat_at <= live[0].heartbeat_at
    await h.lapse()
    assert [r.replica_id for r in await s.heartbeat(A, LONG)] == [A]  # B missed its time to live
    assert [r.replica_id for r in await s.heartbeat(B, LONG)] == [A, B]  # and is back with its next beat
    await s.leave(B)
    assert [r.replica_id for r in await s.heartbeat(A, LONG)] == [A]


# -- leases --------------------------------------------------------------------------------------------------


async def test_tokens_grow_with_every_acquisition_and_a_renewal_keeps_its_token(h: Harness) -> None:
    s = h.store
    first = await s.acquire(A, [W, X, W], LONG)
    assert first.keys() == {W, X} and first[W] != first[X]
    assert await s.acquire(A, [W, X], LONG) == first  # renewed: same tokens
    later = await s.acquire(B, ["ns/y"], LONG)
    assert later["ns/y"] > max(first.values())
    leases = await s.leases()
    assert [(le.webhook, le.owner, le.token) for le in leases] == [
        (W, A, first[W]), (X, A, first[X]), ("ns/y", B, later["ns/y"])]  # fmt: skip
    assert await s.acquire(A, [], LONG) == {}


async def test_a_live_lease_is_not_taken_until_it_expires_then_the_taker_gets_a_larger_token(h: Harness) -> None:
    s = h.store
    mine = await s.acquire(A, [W], SHORT)
    assert (await s.acquire(B, [W, X], LONG)).keys() == {X}  # W is A's and live
    assert (await s.leases())[0] == Lease(W, A, mine[W], (await s.leases())[0].expires_at)
    await h.lapse()
    taken = await s.acquire(B, [W], LONG)
    assert taken[W] > mine[W]
    assert [(le.webhook, le.owner) for le in await s.leases()] == [(W, B), (X, B)]
    assert await s.acquire(A, [W], LONG) == {}  # the old owner cannot renew what it lost


async def test_a_lapsed_lease_comes_back_with_a_new_token_even_to_its_old_owner(h: Harness) -> None:
    s = h.store
    old = await s.acquire(A, [W], SHORT)
    await h.lapse()
    new = await s.acquire(A, [W], LONG)
    assert new[W] > old[W]  # a lane that ran on the old token is fenced, although nobody else took the lease
    assert await s.valid(A, old) == set() and await s.valid(A, new) == {W}


async def test_release_and_leave_free_leases_at_once_and_only_the_callers(h: Harness) -> None:
    s = h.store
    mine = await s.acquire(A, [W, X, "ns/y"], LONG)
    await s.release(A, {W: mine[W] + 100})  # a token it does not hold: nothing happens
    await s.release(B, {X: mine[X]})  # not B's: nothing happens
    assert await s.acquire(B, [W, X], LONG) == {}
    await s.release(A, {W: mine[W]})
    taken = await s.acquire(B, [W], LONG)
    assert taken[W] > max(mine.values())
    await s.heartbeat(A, LONG)
    await s.leave(A)
    assert await s.valid(A, mine) == set()
    assert (await s.acquire(B, [X, "ns/y"], LONG)).keys() == {X, "ns/y"}
    assert [r.replica_id for r in await s.heartbeat(B, LONG)] == [B]
    await s.release(A, {W: mine[W]})  # releasing what B took since: nothing happens
    assert await s.valid(B, taken) == {W}


async def test_valid_is_the_status_claim_for_many_leases_at_once(h: Harness) -> None:
    s = h.store
    mine = await s.acquire(A, [W, X], SHORT)
    kept = await s.acquire(A, ["ns/y"], LONG)
    assert await s.valid(A, mine | kept) == {W, X, "ns/y"}
    assert await s.valid(A, {W: mine[W] + 1}) == set() and await s.valid(B, mine) == set()
    assert await s.valid(A, {"ns/never": 1}) == set() and await s.valid(A, {}) == set()
    await h.lapse()
    assert await s.valid(A, mine | kept) == {"ns/y"}  # expired, not yet taken over
    await s.acquire(B, [W], LONG)
    assert await s.valid(A, mine | kept) == {"ns/y"}  # taken over


async def test_thousands_of_leases_are_acquired_renewed_and_checked_in_single_calls(h: Harness) -> None:
    s = h.store
    keys = [f"ns/w{i:05d}" for i in range(3000)]
    mine = await s.acquire(A, keys[:2000], LONG)
    assert len(mine) == 2000 and len(set(mine.values())) == 2000
    theirs = await s.acquire(B, keys, LONG)
    assert theirs.keys() == set(keys[2000:]) and min(theirs.values()) > max(mine.values())
    assert await s.acquire(A, keys[:2000], LONG) == mine
    assert await s.valid(A, mine) == set(keys[:2000]) and len(await s.leases()) == 3000


async def test_watch_queues_is_accepted_by_every_backend(h: Harness) -> None:
    heard: list[object] = []
    await h.store.watch_queues(heard.append)
    await h.store.enqueue([ev(1, W)])
    if h.name != "postgres":
        await asyncio.sleep(0.05)
        assert heard == []  # one process: nobody else to hear from (PostgreSQL may echo its own: see below)


# -- fencing -------------------------------------------------------------------------------------------------


@dataclass
class Lane:
    """A webhook ``W`` with a held batch and a fallback ``X``; every lane write against it."""

    s: Store
    q: list[QueuedEvent]

    async def snapshot(self) -> object:
        s = self.s
        return (await s.pending(W), await s.pending(X), await s.lane_state(W), await s.lane_state(X),
                await s.attempts(W, AttemptQuery()), await s.attempts(X, AttemptQuery()))  # fmt: skip

    def writes(self) -> dict[str, Callable[[], Awaitable[object]]]:
        s, q = self.s, self.q
        held = RetryState(held_qids=(q[0].qid,), attempts=2, next_attempt_at=1.0)
        return {
            "complete": lambda: s.complete(W, [q[0].qid], record(W, DELIVERED, "id-1")),
            "fail": lambda: s.fail(W, record(W, FAILED, "id-1"), held),
            "save_retry_state": lambda: s.save_retry_state(W, RetryState(paused="failed")),
            "skip": lambda: s.skip(W, [q[0].qid], record(W, SKIPPED, "id-1")),
            "dead_letter": lambda: s.dead_letter(W, [q[1].qid], record(W, SKIPPED, "id-2")),
            "hand_over": lambda: s.hand_over(W, X, [q[0].qid], record(W, SKIPPED), record(X, REQUEUED), held),
            "requeue": lambda: s.requeue(W, ["id-1"], record(W, REQUEUED, "id-1")),
        }


WRITES = ["complete", "fail", "save_retry_state", "skip", "dead_letter", "hand_over", "requeue"]


async def _lane(s: Store) -> Lane:
    q = (await s.enqueue([ev(1, W), ev(2, W), ev(3, W), ev(4, X)])).queued[W]
    await s.fail(W, record(W, FAILED, "id-1"), RetryState(held_qids=(q[0].qid,), attempts=1))
    return Lane(s, q)


@pytest.mark.parametrize("write", WRITES)
async def test_a_replica_whose_lease_was_taken_over_writes_nothing(h: Harness, write: str) -> None:
    s = h.store
    lane = await _lane(s)
    a = Held(A, await s.acquire(A, [W], SHORT) | await s.acquire(A, [X], LONG))
    s.set_fence(a)
    await s.save_retry_state(W, (await s.lane_state(W)).retry)  # passes while the lease is A's and live
    before = await lane.snapshot()
    await h.lapse()
    b = Held(B, await s.acquire(B, [W], LONG))
    assert b.tokens[W] > a.tokens[W]
    with pytest.raises(LeaseLost, match=W):
        await lane.writes()[write]()
    assert await lane.snapshot() == before  # queue, log, retry state and counters of both webhooks unchanged
    s.set_fence(b)
    await lane.writes()[write]()  # the new owner writes
    assert await lane.snapshot() != before


@pytest.mark.parametrize("write", WRITES)
async def test_an_expired_lease_fences_even_before_anyone_takes_it(h: Harness, write: str) -> None:
    s = h.store
    lane = await _lane(s)
    s.set_fence(Held(A, await s.acquire(A, [W], SHORT)))
    before = await lane.snapshot()
    await h.lapse()
    with pytest.raises(LeaseLost, match=W):
        await lane.writes()[write]()
    assert await lane.snapshot() == before


async def test_a_fence_refuses_webhooks_it_holds_no_lease_for_and_hand_over_checks_only_the_source(
    h: Harness,
) -> None:
    s = h.store
    lane = await _lane(s)
    other = await s.acquire(B, [X], LONG)  # the fallback X is another replica's
    s.set_fence(Held(A, {X: other[X]}))  # A claims B's token for X: the owner is checked, not only the token
    before = await lane.snapshot()
    for write in WRITES:
        with pytest.raises(LeaseLost, match=W):
            await lane.writes()[write]()
    with pytest.raises(LeaseLost, match=X):
        await s.save_retry_state(X, RetryState())
    assert await lane.snapshot() == before
    s.set_fence(Held(A, await s.acquire(A, [W], LONG)))
    moved = await lane.writes()["hand_over"]()
    assert isinstance(moved, list) and [e.event_id for e in moved] == ["id-1", "id-2", "id-3"]
    assert (await s.lane_state(W)).pending == 0 and (await s.lane_state(X)).pending == 4


async def test_without_a_fence_nothing_is_checked(h: Harness) -> None:
    s = h.store
    lane = await _lane(s)
    await s.acquire(B, [W], LONG)  # leases exist but no fence is set: a single process owning everything
    s.set_fence(Held(A))
    with pytest.raises(LeaseLost):
        await lane.writes()["complete"]()
    s.set_fence(None)
    await lane.writes()["complete"]()
    assert (await s.lane_state(W)).pending == 2


# -- PostgreSQL: replicas racing on one database -------------------------------------------------------------


@pytest.fixture
async def two() -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two replicas' stores on one database."""
    dsn = postgres.fresh_database()
    a, b = PostgresStore(dsn), PostgresStore(dsn)
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


#: A log line noted "slow" holds its transaction open for ``SLOW`` seconds after the whole statement ran (a deferred
#: trigger fires at commit), fence check included: that is where a takeover must not slip in between check and
#: commit. Only rows so noted are slowed, and the trigger is dropped again, so no other test can be affected.
SLOW = 2.0
_SLOW_TRIGGER = f"""
CREATE OR REPLACE FUNCTION slow_line() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_sleep({SLOW}); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER slow_line AFTER INSERT ON attempts DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.note = 'slow') EXECUTE FUNCTION slow_line();
"""


@pytest.mark.parametrize("write", ["complete", "requeue"])  # one statement; several in the ordered group commit
async def test_a_takeover_waits_for_a_fenced_write_that_passed_its_check(
    two: tuple[PostgresStore, PostgresStore], write: str
) -> None:
    a, b = two
    database = postgres.database_of(a._db._dsn)
    q = (await a.enqueue([ev(1, W)])).queued[W]
    await postgres.admin_in(database, _SLOW_TRIGGER)
    try:
        mine = await a.acquire(A, [W], SHORT)
        a.set_fence(Held(A, dict(mine)))
        loop = asyncio.get_running_loop()
        slow = record(W, DELIVERED if write == "complete" else REQUEUED, "id-1", note="slow")
        writing = asyncio.create_task(
            a.complete(W, [q[0].qid], slow) if write == "complete" else a.requeue(W, ["id-1"], slow)
        )
        await asyncio.sleep(0.1)
        started = loop.time()
        assert await a.acquire(A, [W], SHORT) == mine  # a renewal does not wait for the open write (nor it for us)
        assert loop.time() - started < 1.0  # the write stays open for SLOW = 2 s
        await asyncio.sleep(SHORT + 0.1)  # A's lease has expired by the database's clock; its write is still open
        assert not writing.done()
        started = loop.time()
        taken = await b.acquire(B, [W], LONG)
        waited = loop.time() - started
        seen = await b.attempts(W, AttemptQuery())
        await writing  # A's write passed its check while the lease was A's: it commits ...
    finally:
        await postgres.admin_in(database, "DROP TRIGGER slow_line ON attempts")
    assert taken[W] > mine[W] and waited > 0.1  # ... and B's takeover waited for that commit,
    assert [line.note for line in seen] == ["slow"]  # so the first thing B reads as owner is A's completion
    assert len(await b.pending(W)) == (0 if write == "complete" else 2)
    with pytest.raises(LeaseLost, match=W):  # and from now on A writes nothing
        await a.complete(W, [q[0].qid], record(W, DELIVERED, "id-1"))


async def test_takeovers_racing_fenced_writes_never_let_both_write(two: tuple[PostgresStore, PostgresStore]) -> None:
    """Many webhooks at once, the takeover timed around the old lease's expiry: each of A's writes either committed
    before B's takeover (B then sees it) or raised ``LeaseLost`` (and nobody ever sees it)."""
    a, b = two
    keys = [f"ns/race{i:02d}" for i in range(30)]
    queued = (await a.enqueue([ev(i, k) for i, k in enumerate(keys)])).queued
    mine = await a.acquire(A, keys, 1.0)
    a.set_fence(Held(A, dict(mine)))

    async def write(i: int, key: str) -> bool:
        await asyncio.sleep(0.7 + i * 0.02)  # from 0.3 s before expiry to 0.3 s after
        try:
            await a.complete(key, [queued[key][0].qid], record(key, DELIVERED, f"id-{i}"))
        except LeaseLost:
            return False
        return True

    async def take(i: int, key: str) -> bool:
        await asyncio.sleep(1.0 + (i % 5) * 0.01)
        for _ in range(1000):
            if await b.acquire(B, [key], LONG):
                return bool(await b.attempts(key, AttemptQuery()))  # what the new owner finds on taking over
            await asyncio.sleep(0.005)
        raise AssertionError(f"{key} was never taken over")

    async def race(i: int, key: str) -> tuple[bool, bool]:
        wrote, found = await asyncio.gather(write(i, key), take(i, key))
        return wrote, found

    results = await asyncio.gather(*(race(i, k) for i, k in enumerate(keys)))
    assert [wrote for wrote, found in results] == [found for wrote, found in results]
    assert any(wrote for wrote, _ in results)  # the timing did make some writes win (they passed their check)


async def test_an_enqueue_on_one_replica_wakes_the_others_with_the_webhooks_it_touched(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    heard: list[list[str] | None] = []
    await b.watch_queues(lambda keys: heard.append(None if keys is None else list(keys)))

    async def next_heard() -> list[str] | None:
        for _ in range(500):
            if heard:
                return heard.pop(0)
            await asyncio.sleep(0.01)
        raise AssertionError("no notification within 5 s")

    q = (await a.enqueue([ev(1, W, X), ev(2, W)])).queued
    assert await next_heard() == [W, X]  # one notification per commit, each webhook once
    await a.complete(W, [q[W][0].qid], record(W))  # a dequeue wakes nobody
    await a.requeue(W, ["id-1"], record(W, REQUEUED, "id-1"))
    assert await next_heard() == [W]
    await a.hand_over(W, "ns/fallback", [], record(W, SKIPPED), record("ns/fallback", REQUEUED), RetryState())
    assert await next_heard() == ["ns/fallback"]
    many = [f"ns/{'long-name-' * 5}{i:04d}" for i in range(200)]  # > 7,000 bytes of keys: "any"
    await a.enqueue([ev(3, *many)])
    assert await next_heard() is None
    await asyncio.sleep(0.1)
    assert heard == []

    watcher = b._db._watcher
    assert watcher is not None and watcher._conn is not None
    await postgres.admin(f"SELECT pg_terminate_backend({watcher._conn.get_server_pid()})")
    assert await next_heard() is None  # reconnected: whatever was sent meanwhile is lost, so "look at everything"
    await a.enqueue([ev(4, X)])
    assert await next_heard() == [X]
    await b.close()
    await a.enqueue([ev(5, X)])
    await asyncio.sleep(0.3)
    assert heard == [] and watcher._task is None  # closing the store stopped listening
