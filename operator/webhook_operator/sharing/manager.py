"""The lease manager: which webhooks this replica delivers, renewed every ``lease_duration / 3`` seconds.

One tick: heartbeat (this replica is live for ``lease_duration`` more; the answer is every live replica) →
desired = the registered webhooks whose rendezvous winner among the live replicas is this one → ``acquire`` renews
every lease held and takes new desired ones (at most ``TAKE_BATCH``), in one call → a held webhook missing from the
answer (or back with another token: it lapsed) is *lost*: its lane stops at once and nothing more is written for it
→ the new ones are queued for *adoption* → webhooks held but no longer desired are queued for *hand-over*.

A tick only talks to the store about leases (two or three statements, however many webhooks): the slow parts run
beside it, so a renewal never waits for them. *Adoption* (the lane read from the store: the held batch first, order
kept) runs in at most ``ADOPT_CONCURRENCY`` tasks: a webhook held but not adopted yet simply does not deliver yet
(``acts_on`` answers "ask again"), and one lost or handed over meanwhile is not adopted, or is dropped again right
after. A *hand-over* (a webhook another replica should deliver now) stops the lane's new batches, lets the attempts
in flight finish, drops the lane (its last completion commits under the lease, which the ticks keep renewing
meanwhile) and only then releases the lease: the new winner takes it at its next tick. Registrations ask for a tick
(``nudge``), several at most one per ``NUDGE_GAP``: a thousand registrations are a few ticks, not a thousand.

Takeover bound: a replica that dies stops renewing; its leases expire ``lease_duration`` after its last renewal,
and each survivor, ticking every ``lease_duration / 3``, sees it gone from the live set (its heartbeat has the same
time to live) and acquires its share at the first tick after the expiry: at most ``lease_duration +
lease_duration / 3`` (default 10 s + 3.3 s ≤ 15 s).

Safety does not rest on this process's timing: the store checks every lane write against this manager (the
``Fence``: replica id and token per held webhook, the token growing with every acquisition), in the write's own
transaction. On top of that a replica that cannot reach the store stops by itself: once ``lease_duration`` has
passed since the start of its last successful renewal statement (sent before the database reads its clock for
the new expiry) its leases may have expired, so it drops every lane
(``token`` already answers None from that moment, which fences every write and stops every send) and acquires again
when the store answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from webhook_operator.sharing.metrics import LeaseMetrics
from webhook_operator.sharing.rendezvous import mine, owner
from webhook_operator.store.base import LeaseStore, Replica, StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_LEASE_DURATION = 10.0
#: How often the owned lanes read the store even without a wake-up (a backstop for a missed notification), and
#: how many lanes one such pass reads at most: with many webhooks each is read every ``owned / POLL_SLICE * 2`` s.
POLL_EVERY = 2.0
POLL_SLICE = 250
#: A registration asks for a tick this soon (several registrations in a row share it) …
NUDGE_DELAY = 0.05
#: … but nudged ticks start at most this often (at most a quarter of the renewal period): each renews every lease.
NUDGE_GAP = 1.0
#: How often a hand-over looks whether the attempts in flight have finished.
HANDOVER_POLL = 0.02
#: New webhooks taken per tick at most, fewer while that many still wait for adoption; more follow at the next
#: (nudged) tick. Bounds the take statement (it holds the queue lock) and the adoption backlog.
TAKE_BATCH = 500
#: Lanes read from the store at once for adoption (two reads each): leaves most of the pool to renewals and lanes.
ADOPT_CONCURRENCY = 4


def takeover_bound(lease_duration: float) -> float:
    """The longest a dead replica's webhooks wait for a new owner: expiry plus one tick."""
    return lease_duration + lease_duration / 3


class Lanes(Protocol):
    """What the manager needs from the dispatcher (``delivery.shared_lanes.SharedLanes``)."""

    on_lease_lost: Callable[[str], None] | None
    on_registered: Callable[[str], None] | None
    may_send: Callable[[str], bool] | None

    def keys(self) -> list[str]: ...

    async def adopt(self, key: str) -> bool: ...

    async def drop(self, key: str) -> None: ...

    def wake(self, keys: Sequence[str] | None) -> None: ...

    def sending(self, key: str) -> bool: ...


class LeaseManager:
    """Takes, renews and gives up this replica's leases; the ``Fence`` the store checks lane writes against."""

    def __init__(self, store: LeaseStore, lanes: Lanes, *, replica: str, lease_duration: float = DEFAULT_LEASE_DURATION,
                 address: str | None = None, clock: Callable[[], float] = time.monotonic,
                 metrics: LeaseMetrics | None = None, forget: Callable[[str], None] | None = None) -> None:  # fmt: skip
        if lease_duration <= 0:
            raise ValueError("lease_duration must be positive")
        self._store, self._lanes = store, lanes
        self._replica, self.lease_duration, self.address = replica, lease_duration, address
        self._clock = clock
        self._metrics = metrics or LeaseMetrics()
        self._forget = forget  # a dropped webhook's per-webhook metrics: its new owner reports them now
        self._held: dict[str, int] = {}
        self._renewed_at = float("-inf")  # clock time the last successful acquire started
        self._live: dict[str, Replica] = {}
        self._ticked = False
        self._watching = False
        self._ticking = asyncio.Lock()
        self._nudged = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._dropping: set[asyncio.Task[None]] = set()
        #: Keys whose old lane is still being stopped: not taken again until it is (a write of the old lane still
        #: retrying would otherwise carry the new token and pass the fence).
        self._stopping: set[str] = set()
        self._leaving: set[str] = set()  # being handed over: no new batch, the one in flight may finish
        self._to_adopt: dict[str, int] = {}  # held, lane not read yet (in order), with the token taken
        self._adopting: set[str] = set()  # queued or being read
        self._adopters: set[asyncio.Task[None]] = set()
        self._handing: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._poll_from = 0

    # -- Fence -----------------------------------------------------------------------------------------------

    @property
    def replica(self) -> str:
        return self._replica

    def token(self, webhook: str) -> int | None:
        """The token of ``webhook``'s lease while this replica may still hold it (None once ``lease_duration``
        passed since the last renewal began: the store may have expired it)."""
        token = self._held.get(webhook)
        return token if token is not None and self._fresh() else None

    def _fresh(self) -> bool:
        return self._clock() < self._renewed_at + self.lease_duration

    # -- what the rest of the replica asks ---------------------------------------------------------------------

    def owns(self, webhook: str) -> bool:
        return self.token(webhook) is not None

    def may_send(self, webhook: str) -> bool:
        """Whether a lane may start another batch: it owns the webhook and is not handing it over."""
        return webhook not in self._leaving and self.owns(webhook)

    def tokens(self, webhooks: Sequence[str]) -> dict[str, int]:
        """The tokens of those of ``webhooks`` held now (what a status claim asks the store to confirm)."""
        if not self._fresh():
            return {}
        return {w: t for w in webhooks if (t := self._held.get(w)) is not None}

    @property
    def owned_count(self) -> int:
        return len(self._held) if self._fresh() else 0

    def acts_on(self, webhook: str) -> bool | None:
        """Who acts on a request for ``webhook`` that every replica hears (an operation annotation): True this
        replica (it owns it and delivers it), False another one (the rendezvous winner, which will own it), None
        this replica should own it but does not hold the lease or has not read its lane yet: ask again in a
        moment."""
        if self.owns(webhook):
            return None if webhook in self._adopting else True
        return None if owner(webhook, list(self._live) or [self._replica]) == self._replica else False

    def owner_address(self, webhook: str) -> tuple[str | None, str | None]:
        """(replica id, ``host:port``) of the replica that should own ``webhook`` by the last heartbeat's live
        set; either may be None (no live replica known; one that advertised no address)."""
        winner = owner(webhook, list(self._live))
        replica = self._live.get(winner) if winner is not None else None
        return winner, replica.address if replica is not None else None

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self, *, ticking: bool = True) -> None:
        """Fence the store, listen for other replicas' queue changes, take the first leases, then keep ticking
        (``ticking`` False: the caller calls ``tick`` and ``poll``, as the unit tests do with their clock)."""
        self._store.set_fence(self)
        self._lanes.on_lease_lost = self._lost
        self._lanes.may_send = self.may_send
        self._lanes.on_registered = lambda key: self.nudge()
        with contextlib.suppress(StoreUnavailable):
            await self.tick()
        if not ticking:
            return
        self._tasks = [asyncio.create_task(self._tick_forever(), name="lease-ticks"),
                       asyncio.create_task(self._poll_forever(), name="lease-poll")]  # fmt: skip

    async def stop(self) -> None:
        """Stop ticking, adopting and handing over (the lanes are the dispatcher's to close: their last
        completions still pass the fence)."""
        self._stopped = True
        tasks = [*self._tasks, *self._adopters, *self._handing]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        self._to_adopt.clear()
        self._adopting.clear()

    async def settled(self) -> None:
        """Wait until every adoption and hand-over started so far has finished (the unit tests' ticks)."""
        while pending := [*self._adopters, *self._handing, *self._dropping]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def leave(self) -> None:
        """A clean shutdown, after the lanes closed: every lease expires now, so the others take over at their
        next tick instead of after the lease duration."""
        self._held.clear()
        self._metrics.owned.set(0)
        try:
            await self._store.leave(self._replica)
        except StoreUnavailable as exc:
            log.warning("could not leave the replica set (the leases expire by themselves): %s", exc)

    def nudge(self) -> None:
        """Tick soon (a webhook was registered: take it now rather than at the next regular tick)."""
        self._nudged.set()

    async def _tick_forever(self) -> None:
        """A tick every ``lease_duration / 3`` from the start of the previous one (however long that took), and
        sooner when nudged, but nudged ticks at most one per ``NUDGE_GAP``."""
        loop = asyncio.get_running_loop()
        period = self.lease_duration / 3
        gap = min(NUDGE_GAP, period / 4)
        last = loop.time()  # ``start`` ticked once
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), max(0.0, last + period - loop.time()))
                await asyncio.sleep(max(NUDGE_DELAY, last + gap - loop.time()))
            self._nudged.clear()
            last = loop.time()
            try:
                await self.tick()
            except StoreUnavailable as exc:
                log.warning("lease renewal failed: %s", exc)
            except Exception:  # a bug must not stop renewing; the next tick tries again
                log.exception("lease tick failed")

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_EVERY)
            self.poll()

    def poll(self) -> None:
        """The backstop: the next ``POLL_SLICE`` owned lanes read the store again."""
        held = sorted(self._held)
        if not held:
            return
        start = self._poll_from % len(held)
        batch = (held[start:] + held[:start])[:POLL_SLICE]
        self._poll_from = start + len(batch)
        self._lanes.wake(batch)

    # -- one tick --------------------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Heartbeat, renew and take, then queue adoptions and hand-overs (see the module docstring). Raises
        StoreUnavailable (after dropping every lane if the leases may have expired meanwhile)."""
        async with self._ticking:
            if not self._watching:  # first: every replica's queue changes wake the lanes this one adopts
                await self._store.watch_queues(self._lanes.wake)
                self._watching = True
            if self._held and not self._fresh():  # e.g. a process resumed after SIGSTOP: stop before anything else
                self._lose_all("no renewal for the lease duration")
            try:
                live = await self._store.heartbeat(self._replica, self.lease_duration, self.address)
                ids = [r.replica_id for r in live]
                if self._replica not in ids:
                    ids.append(self._replica)
                before = list(self._live)
                desired = mine(self._lanes.keys(), ids, self._replica)
                renewing = dict(self._held)
                new = sorted(desired.difference(self._held).difference(self._stopping))
                room = max(0, TAKE_BATCH - len(self._to_adopt))
                if len(new) > room:
                    self.nudge()
                new = new[:room]
                # Every lease in the answer expires ``lease_duration`` after the database read its clock, which is
                # after this moment: the renewal counts from here, not from the end of the call.
                started = self._clock()
                got = await self._store.acquire(self._replica, [*renewing, *new], self.lease_duration)
            except StoreUnavailable:
                if self._held and not self._fresh():
                    self._lose_all("the store has been unreachable for the lease duration")
                raise
            if (took := self._clock() - started) > self.lease_duration / 3:  # the sign of a starved replica
                log.warning("renewing %d lease(s) and taking %d took %.1f s (the lease lasts %g s)", len(renewing),
                            len(new), took, self.lease_duration)  # fmt: skip
            self._renewed_at = started
            self._live = {r.replica_id: r for r in live}
            # Only what this tick asked about: a hand-over may have let a key go while the call was under way.
            lost = [k for k, t in renewing.items() if self._held.get(k) == t and got.get(k) != t]
            for key in lost:
                del self._held[key]
            if lost:
                self._metrics.losses.inc(len(lost))
                log.warning("lost the lease of %d webhook(s) (another replica took them over): %s", len(lost),
                            ", ".join(sorted(lost)[:5]) + (" …" if len(lost) > 5 else ""))  # fmt: skip
                self._drop_later(lost)
            taken = {k: got[k] for k in new if k in got and k not in self._held}
            self._held.update(taken)  # held before adopting: the lane's writes pass the fence from its first one
            self._taken(taken, before, ids)
            self._hand_over({k: t for k, t in self._held.items() if k not in desired and k not in self._leaving})
            self._metrics.owned.set(len(self._held))
            self._ticked = True

    def _taken(self, taken: dict[str, int], before: list[str], live: list[str]) -> None:
        """Count the new leases and queue their lanes for adoption."""
        if not taken:
            return
        self._metrics.acquisitions.inc(len(taken))
        takeovers = 0
        for key in taken:
            previous = owner(key, before) if self._ticked and before else None
            if previous is not None and previous != self._replica and previous not in live:
                takeovers += 1
        if takeovers:
            self._metrics.takeovers.inc(takeovers)
            log.warning("took over %d webhook(s) from replicas that left", takeovers)
        self._queue_adoption(taken)

    def _queue_adoption(self, taken: dict[str, int]) -> None:
        if self._stopped or not taken:  # stopped: the dispatcher is closing its lanes, none is to start now
            return
        self._to_adopt.update(taken)
        self._adopting.update(taken)
        while len(self._adopters) < min(ADOPT_CONCURRENCY, len(self._to_adopt)):
            task = asyncio.create_task(self._adopt_queued(), name="lease-adopt")
            self._adopters.add(task)
            task.add_done_callback(self._adopters.discard)

    async def _adopt_queued(self) -> None:
        """Read queued lanes from the store, one at a time, until none is left (one of ``ADOPT_CONCURRENCY``)."""
        while self._to_adopt:
            key = next(iter(self._to_adopt))
            token = self._to_adopt.pop(key)
            try:
                if self._held.get(key) == token and key not in self._leaving:  # not lost or leaving meanwhile
                    await self._lanes.adopt(key)
            except Exception as exc:  # not adopted: let go of the token; the next tick renews it and retries
                if self._held.get(key) == token:
                    del self._held[key]
                log.warning("could not start delivering %s: %s; trying again at the next tick", key, exc)
            finally:
                if key not in self._to_adopt:
                    self._adopting.discard(key)
            if self._held.get(key) != token or key in self._leaving:
                # Lost, dropped or handed over while its lane was being read: whichever drop ran before the lane
                # existed missed it. Dropping again is harmless when it did not.
                with contextlib.suppress(Exception):
                    await self._lanes.drop(key)

    def _hand_over(self, leaving: dict[str, int]) -> None:
        if leaving:
            self._leaving.update(leaving)
            task = asyncio.create_task(self._handing_over(leaving), name="lease-hand-over")
            self._handing.add(task)
            task.add_done_callback(self._handing.discard)

    async def _handing_over(self, leaving: dict[str, int]) -> None:
        """Webhooks another replica should deliver now: their lanes start no new batch, the attempts in flight
        get up to ``lease_duration / 6`` to finish (so a hand-over sends nothing twice), then each lane is dropped
        (its last completion commits under the lease) and the leases released: the new winner takes them at its
        next tick."""
        try:
            for _ in range(max(1, int(self.lease_duration / 6 / HANDOVER_POLL))):  # real time: real requests
                if not any(self._lanes.sending(key) for key in leaving):
                    break
                await asyncio.sleep(HANDOVER_POLL)
            await self._drop(list(leaving))
        finally:
            for key, token in leaving.items():
                if self._held.get(key) == token:
                    del self._held[key]
                self._leaving.discard(key)
        log.info("handing %d webhook(s) over to other replicas", len(leaving))
        try:
            await self._store.release(self._replica, leaving)
        except StoreUnavailable as exc:
            log.warning("could not release %d lease(s) (they expire by themselves): %s", len(leaving), exc)

    async def _drop(self, keys: Sequence[str]) -> None:
        self._stopping.update(keys)
        try:
            results = await asyncio.gather(*(self._lanes.drop(key) for key in keys), return_exceptions=True)
        finally:
            self._stopping.difference_update(keys)
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, BaseException):
                log.error("stopping the lane of %s failed: %s", key, result)
            if self._forget is not None:
                self._forget(key)
        # Held again meanwhile (its lease came back at a tick while the old lane was being stopped: an adoption
        # that ran first found the lane still delivering and left it): read it once more.
        self._queue_adoption({k: t for k in keys if (t := self._held.get(k)) is not None and k not in self._leaving})

    def _lose_all(self, why: str) -> None:
        lost = list(self._held)
        self._held.clear()
        self._metrics.losses.inc(len(lost))
        self._metrics.owned.set(0)
        log.error("%s: stopping delivery of all %d webhook(s) this replica held", why, len(lost))
        self._drop_later(lost)

    def _lost(self, key: str) -> None:
        """A lane write found the lease gone: forget it now (the lane stopped itself) and drop the lane."""
        if key in self._leaving:
            return  # it stopped because it is being handed over (``may_send``): the hand-over drops it
        if self._held.pop(key, None) is not None:
            self._metrics.losses.inc()
            self._metrics.owned.set(len(self._held))
            self._drop_later([key])

    def _drop_later(self, keys: Sequence[str]) -> None:
        """Drop lanes beside the ticks (their tokens are gone already: they send and write nothing more)."""
        if keys:
            task = asyncio.ensure_future(self._drop(keys))
            self._dropping.add(task)
            task.add_done_callback(self._dropping.discard)
