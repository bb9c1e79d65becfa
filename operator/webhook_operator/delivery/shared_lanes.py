"""The dispatcher's side of work sharing between replicas (issue 15): parked lanes, adopt and drop, and a
lane's queue head when several replicas enqueue for one webhook. ``sharing.manager`` decides; this only does.

Every replica registers every webhook (its intake routes events to any webhook's queue), but a webhook this
replica does not own has a *parked* lane: its target and filters for routing, a closed worker, nothing read from
the store and nothing reported to status. ``adopt`` turns it into a real lane read from the store (the held batch
first, order kept); ``drop`` parks it again without touching the store.

Each replica's intake commits events for every webhook, but only the owner delivers it. Order is the store's qid
order, which is commit order across replicas (PostgreSQL takes a queue lock), so the owner must never deliver an
entry its own intake committed before an older one another replica committed: with an in-memory shortcut for its
own entries it would (event N accepted by replica A, N+1 by the owner B right after A's 202: B could send N+1
first). Here every new entry, the owner's own included, is read from the store in qid order; appends only count
them and mark the store as having more. A page that reaches the end of the queue resets ``total`` to what memory
holds, which is then every entry still queued, whoever committed it, so status ``pending`` is exact again after
every such read however the entries arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from webhook_operator.api.delivery_limits import Ordering
from webhook_operator.delivery.attempt import AttemptPipeline
from webhook_operator.delivery.lane import Lane
from webhook_operator.delivery.limits import QueueLimits
from webhook_operator.delivery.ordering import keyed_lane, webhook_lane_state
from webhook_operator.delivery.parsed import ParsedEvents
from webhook_operator.delivery.queue import PAGE, KeyedQueue, LaneQueue
from webhook_operator.delivery.related import FallbackPort
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.delivery.worker import LaneWorker
from webhook_operator.routing import CompiledFilters
from webhook_operator.store.base import Counters, LaneState, LaneStore, QueuedEvent, RetryState, Store


class SharedLaneQueue(LaneQueue):
    """``LaneQueue`` that takes every entry from the store (see the module docstring)."""

    @classmethod
    async def load(cls, store: LaneStore, webhook: str, total: int) -> SharedLaneQueue:
        page = await store.pending(webhook, 0, PAGE)
        # A short first page is the whole queue, read in one statement: a better count than one read before it.
        return cls(page, len(page) if len(page) < PAGE else max(total, len(page)))

    def append(self, entries: Sequence[QueuedEvent]) -> None:
        """Entries this replica committed: counted now (unless a page already read them), read in order later."""
        fresh = sum(1 for e in entries if e.qid > self._last_qid)
        if fresh:
            self.total += fresh
            self.changed_elsewhere()

    def changed_elsewhere(self) -> None:
        """The store may hold entries this queue has not read (another replica's commit, or a missed wake-up):
        read them, in order, once memory drains."""
        self._more_on_disk = True
        self._disk_dirty = True

    async def page_in(self, store: LaneStore, webhook: str) -> None:
        await super().page_in(store, webhook)
        if not self._more_on_disk:  # memory now holds every entry still queued
            self.total = len(self._entries)


class SharedLanes(FallbackPort):
    """The dispatcher's work-sharing half (a mixin of ``dispatcher.Dispatcher``, which sets these attributes)."""

    _store: Store
    _pipeline: AttemptPipeline
    _parsed: ParsedEvents
    _policy: RetryPolicy
    _limits: QueueLimits
    _workers: dict[str, LaneWorker]
    _register_locks: dict[str, asyncio.Lock]
    _stopping: bool
    _shared: bool
    _owned: set[str]
    #: Set by ``sharing.manager``: a lane found its lease gone; a new webhook was registered; may a lane send now.
    on_lease_lost: Callable[[str], None] | None = None
    on_registered: Callable[[str], None] | None = None
    may_send: Callable[[str], bool] | None = None

    def _notify(self, lane: Lane) -> None:
        raise NotImplementedError

    def _kick_sources(self, key: str) -> None:
        raise NotImplementedError

    def owns(self, key: str) -> bool:
        """Whether this replica delivers ``key`` now (always, without work sharing, once it is registered)."""
        return key in self._workers and (not self._shared or key in self._owned)

    def owned(self) -> list[str]:
        return list(self._owned) if self._shared else list(self._workers)

    async def _new_worker(self, target: WebhookTarget, filters: CompiledFilters, *, park: bool) -> LaneWorker:
        """A lane read from the store (its retry state, counters and queue head), or a parked one that only
        routes: empty, its worker closed, nothing read."""
        if park:
            state = LaneState(RetryState(), Counters(), 0)
            queue = LaneQueue([], 0)
        else:
            state = await self._store.lane_state(target.key)
            if target.spec.delivery_ordering is not Ordering.WEBHOOK:  # issue 12: entity/none deliver in parallel
                keyed = await keyed_lane(target, filters, state, store=self._store, pipeline=self._pipeline,
                                         parsed=self._parsed, policy=self._policy, limits=self._limits,
                                         notify=self._notify, fallback=self, shared=self._shared)  # fmt: skip
                keyed.on_lease_lost, keyed.may_send = self.on_lease_lost, self.may_send
                return keyed
            state = webhook_lane_state(state)
            load = SharedLaneQueue.load if self._shared else LaneQueue.load
            queue = await load(self._store, target.key, state.pending)
        lane = Lane(target, filters, state, queue, self._policy, self._limits)
        worker = LaneWorker(lane, store=self._store, pipeline=self._pipeline, parsed=self._parsed,
                            notify=self._notify, fallback=self)  # fmt: skip
        if park:
            await worker.close()  # never sends, appends or trims
        else:
            worker.on_lease_lost, worker.may_send = self.on_lease_lost, self.may_send
        return worker

    async def adopt(self, key: str) -> bool:
        """This replica now holds ``key``'s lease: read its lane from the store (the held batch first, order
        kept) and start delivering. False when ``key`` is not registered (or already delivered here)."""
        async with self._register_locks.setdefault(key, asyncio.Lock()):
            parked = self._workers.get(key)
            if parked is None or key in self._owned or not self._shared:
                return False
            worker = await self._new_worker(parked.lane.target, parked.lane.filters, park=False)
            worker.lane.related_warnings = parked.lane.related_warnings
            if self._workers.get(key) is not parked:  # unregistered while reading
                await worker.close()
                return False
            self._workers[key] = worker
            self._owned.add(key)
            self._notify(worker.lane)
            self._kick_sources(key)
            if not self._stopping:
                worker.kick()
                if worker.lane.over_cap:
                    worker.enforce_cap()
            return True

    async def drop(self, key: str) -> None:
        """This replica gives ``key`` up (or lost its lease): stop its worker without touching the store (the
        queue and retry state are the next owner's); a completion in flight commits within the close's grace or
        is abandoned, and a lost lease fences it. The webhook stays registered for routing."""
        async with self._register_locks.setdefault(key, asyncio.Lock()):
            worker = self._workers.get(key)
            if worker is None or key not in self._owned:
                return
            self._owned.discard(key)
            await worker.close()
            if self._workers.get(key) is worker:
                parked = await self._new_worker(worker.lane.target, worker.lane.filters, park=True)
                parked.lane.related_warnings = worker.lane.related_warnings
                self._workers[key] = parked

    def sending(self, key: str) -> bool:
        """Whether ``key``'s lane here has a batch in flight (a hand-over lets it finish first)."""
        worker = self._workers.get(key)
        return worker is not None and key in self._owned and worker.sending

    def wake(self, keys: Sequence[str] | None) -> None:
        """Another replica changed these webhooks' queues (None: any may have): the owned ones read the store
        again, in order, once their memory drains."""
        for key in self._owned if keys is None else keys:
            worker = self._workers.get(key) if key in self._owned else None
            if worker is not None and isinstance(worker.lane.queue, SharedLaneQueue | KeyedQueue):
                worker.lane.queue.changed_elsewhere()
                if not self._stopping:
                    worker.kick()
