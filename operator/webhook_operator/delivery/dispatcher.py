"""The lane table: register webhooks, route accepted events to their lanes, hand out lanes to operations.

Flow per event: ``submit`` matches it against every enabled webhook's precompiled filters, commits it and its
per-webhook queue entries in one store transaction (so a 202 means durable *and* routed), then wakes the lanes'
workers. What happens inside a lane is ``worker.LaneWorker``'s job; what a lane's state means is ``lane.Lane``'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.outcomes import NullObserver, StateObserver, WebhookSnapshot
from webhook_operator.delivery.attempt import AttemptPipeline
from webhook_operator.delivery.lane import Lane
from webhook_operator.delivery.lane_reports import LaneReports
from webhook_operator.delivery.limits import QueueLimits
from webhook_operator.delivery.ordering import reordered, switches
from webhook_operator.delivery.parsed import ParsedEvents
from webhook_operator.delivery.related import RelatedGraph
from webhook_operator.delivery.related_lanes import EventSink, NoEvents, RelatedLanes, encode_event
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.delivery.unrouted import DeferredRouter
from webhook_operator.delivery.worker import LaneWorker
from webhook_operator.routing import CompiledFilters, FilterError
from webhook_operator.store.base import (
    AttemptRecord,
    EnqueueResult,
    QueuedEvent,
    RoutedEvent,
    Store,
    StoreUnavailable,
)
from webhook_operator.store.unrouted import Routing

log = logging.getLogger(__name__)

__all__ = ["Dispatcher", "QueueLimits", "SubmitResult", "encode_event"]


@dataclass(frozen=True)
class SubmitResult:
    accepted: int
    duplicates: int
    queued: int  # deliveries queued (an event matching three webhooks counts three)


class Dispatcher(RelatedLanes):
    def __init__(self, store: Store, pipeline: AttemptPipeline, *, retry: RetryPolicy | None = None,
                 observer: StateObserver | None = None, limits: QueueLimits | None = None,
                 events: EventSink | None = None, shared: bool = False,
                 webhooks_known: bool = True) -> None:  # fmt: skip
        self._store = store
        #: Work sharing (issue 15): several replicas, each delivering only the webhooks it ``adopt``-ed. Every
        #: webhook is still registered (routing needs its filters), but one this replica does not own has a
        #: parked lane: a closed worker, no queue read from the store, no snapshot reported.
        self._shared = shared
        self._owned: set[str] = set()
        self._events = events or NoEvents()
        self._related = RelatedGraph()
        self._emitting: set[asyncio.Task[None]] = set()
        self._pipeline = pipeline
        self._policy = retry or RetryPolicy()
        self._limits = limits or QueueLimits()
        self._observer = observer or NullObserver()
        self._reports = LaneReports(self._observer, self.owns)  # snapshots once per loop turn, not per change
        self._workers: dict[str, LaneWorker] = {}
        self._parsed = ParsedEvents()
        # ``webhooks_known`` False (the operator's start-up): events are stored unrouted until ``webhooks_known()``.
        self._unrouted = DeferredRouter(store, self._routes, self._deliver, self._parsed, known=webhooks_known)
        self._register_locks: dict[str, asyncio.Lock] = {}
        self._stopping = False

    # -- registration --------------------------------------------------------------------------------------

    async def register(self, target: WebhookTarget) -> WebhookSnapshot:
        """Add or replace a webhook. A changed configuration resumes a paused or retrying webhook at once.
        Filters that do not compile make it a configuration error (state failed), never an exception here."""
        async with self._register_locks.setdefault(target.key, asyncio.Lock()):
            worker = self._workers.get(target.key)
            try:
                filters = CompiledFilters.compile(target.spec.event_filters)
            except FilterError as exc:
                target = dataclasses.replace(target, config_error=target.config_error or str(exc))
                # Keep routing by the last good filters so nothing is dropped while the spec is being fixed.
                filters = worker.lane.filters if worker is not None else CompiledFilters.compile([])
            related_changed = self._related.update(target.key, target.spec)
            if worker is None:
                worker = await self._new_worker(target, filters, park=self._shared)
                self._workers[target.key] = worker
                if self.on_registered is not None:  # work sharing: take its lease soon
                    self.on_registered(target.key)
            else:
                ended = worker.lane.fallback
                if self.owns(target.key) and switches(worker, target):  # issue 12: the other kind of lane
                    worker = self._workers[target.key] = await reordered(
                        worker, self._store, lambda: self._new_worker(target, filters, park=False)
                    )
                    if ended is not None:
                        self._fallback_ended(target.key, ended, "its configuration changed")
                elif worker.lane.reconfigure(target, filters) and self.owns(target.key):
                    await worker.save_retry_state()
                    if ended is not None and worker.lane.fallback is None:
                        self._fallback_ended(target.key, ended, "its configuration changed")
            self._related_warnings({*related_changed, target.key}, target.key)
            await self._end_refused_fallbacks(related_changed - {target.key})
            self._notify(worker.lane)
            self._kick_sources(target.key)
            if not self._stopping:
                worker.kick()
                if worker.lane.over_cap:  # a lowered maxQueued, or a backlog from before a restart
                    worker.enforce_cap()
            return worker.lane.snapshot()

    async def unregister(self, key: str) -> None:
        """The Webhook is gone: stop its worker and drop its queue and retry state."""
        self._register_locks.pop(key, None)
        self._owned.discard(key)
        worker = self._workers.pop(key, None)
        changed = self._related.update(key, None)
        self._related_warnings(changed, None)
        await self._end_refused_fallbacks(changed)
        if worker is not None:
            await worker.close()
        await self._store.purge(key)

    def snapshot(self, key: str) -> WebhookSnapshot | None:
        self._reports.flush()  # whoever looks at a snapshot may look at the observer next
        worker = self._workers.get(key)
        return worker.lane.snapshot() if worker else None

    def keys(self) -> list[str]:
        return list(self._workers)

    def target(self, key: str) -> WebhookTarget:
        """The registered target of ``key``; KeyError when the webhook is not registered."""
        return self._workers[key].lane.target

    def worker(self, key: str) -> LaneWorker:
        """The lane worker of ``key`` (operations act through it); KeyError when not registered."""
        return self._workers[key]

    # -- intake --------------------------------------------------------------------------------------------

    async def submit(self, events: Sequence[ChangeEvent], bodies: Sequence[bytes] | None = None) -> SubmitResult:
        """Durably accept and route events; returns after the commit. Raises StoreUnavailable (nothing taken)."""
        # Before the Webhook list is known the events are stored unrouted, and afterwards behind any that still
        # wait (``delivery.unrouted``): accepted either way, routed in arrival order.
        routing = self._unrouted.routing
        keys = self._routes(events) if routing is not Routing.UNROUTED else [[] for _ in events]
        routed = [
            RoutedEvent(event.id, bodies[i] if bodies is not None else encode_event(event), keys[i])
            for i, event in enumerate(events)
        ]
        # Shielded: if the caller is cancelled (its client went away) the commit still happens, and so must the
        # routing into the lanes, or committed events would sit on disk undelivered until a restart.
        return await asyncio.shield(self._enqueue_and_route(events, routed, routing))

    def _routes(self, events: Sequence[ChangeEvent]) -> list[list[str]]:
        """The webhook keys each event goes to now (``submit``, and the deferred routing of unrouted events)."""
        # A webhook whose fallback is active routes to its fallback (issue 14); an event both route to goes once.
        lanes = [(w.lane, self._destination(w.lane)) for w in self._workers.values() if w.lane.accepting]
        diverted = any(lane.key != dest for lane, dest in lanes)
        routes = []
        for event in events:
            keys = [dest for lane, dest in lanes if lane.filters.matches(event)]
            routes.append(list(dict.fromkeys(keys)) if diverted else keys)
        return routes

    def webhooks_known(self) -> None:
        """Every existing Webhook is registered (the start-up list was read): route what was accepted unrouted,
        and from now on route at once whatever does not have to wait behind it."""
        self._unrouted.start()

    @property
    def delivering(self) -> bool:
        """Whether the Webhook list is known (readiness: ``delivery``)."""
        return self._unrouted.known

    async def _enqueue_and_route(self, events: Sequence[ChangeEvent], routed: list[RoutedEvent],
                                 routing: Routing = Routing.GIVEN) -> SubmitResult:  # fmt: skip
        result = await self._store.enqueue(routed, routing=routing)
        parsed = {seq: event for event, seq in zip(events, result.seqs, strict=True) if seq is not None}
        if result.unrouted:
            for seq, event in parsed.items():  # for the deferred router's read
                self._parsed.keep(seq, event)
            self._unrouted.kick()
        return SubmitResult(result.accepted, result.duplicates, self._deliver(result, parsed))

    def _deliver(self, result: EnqueueResult, parsed: Mapping[int, ChangeEvent]) -> int:
        """Committed queue entries into their lanes; how many were handed over. ``parsed`` (by seq) is kept for
        the lanes that take each event, so that they do not parse it again."""
        takers: list[tuple[LaneWorker, list[QueuedEvent]]] = []
        uses: dict[int, int] = {}
        for key, entries in result.queued.items():
            worker = self._workers.get(key)
            if worker is None:  # unregistered while we were committing: the purge removes its entries
                continue
            if self._shared and key not in self._owned:  # its owner hears of them from the store
                continue
            takers.append((worker, entries))
            for entry in entries:
                uses[entry.seq] = uses.get(entry.seq, 0) + 1
        for seq, event in parsed.items():
            self._parsed.put(seq, event, uses.get(seq, 0))
        for worker, entries in takers:
            worker.append(entries)
        return sum(len(entries) for _, entries in takers)

    # -- operator actions on a lane --------------------------------------------------------------------------

    async def resume(self, key: str, who: str = "operator") -> bool:
        """Send the held batch now: leaves retryLimitReached/failed, or cuts an awaitingRetry wait short (the retry
        schedule starts over), and ends an active fallback. False when nothing is held or paused."""
        worker = self._workers[key]
        fallback = worker.lane.fallback
        resumed = await worker.resume(who)
        if resumed and fallback is not None:
            self._fallback_ended(key, fallback, f"resumed by {who}")
        return resumed

    async def hand_back(self, key: str, why: str) -> bool:
        """End ``key``'s active fallback (a test delivery to its own endpoint succeeded). False when none is active."""
        worker = self._workers[key]
        fallback = worker.lane.fallback
        if fallback is None or not await worker.hand_back(f"fallback {fallback} ended: {why}"):
            return False
        self._fallback_ended(key, fallback, why)
        return True

    async def skip(self, key: str, who: str = "operator") -> list[str]:
        """Drop the held batch into the dead letters (logged with who asked) and carry on with the next one."""
        return await self._workers[key].skip(who)

    async def redeliver(self, key: str, event_ids: Sequence[str], record: AttemptRecord) -> list[str]:
        """Queue stored events again for ``key``, in the given order, behind what it has queued; ``record`` (who
        asked) goes into its log in the same commit. Returns the ids queued (those the store still holds)."""
        return [e.event_id for e in await self._workers[key].requeue(event_ids, record)]

    # -- queue limits ----------------------------------------------------------------------------------------

    async def sweep(self, *, refresh_dead_letters: bool = True) -> int:
        """The periodic part of the queue limits: move events older than each webhook's ``maxQueuedAge`` (and any
        still over ``maxQueued``) to the dead letters, and, after retention ran, read back how many dead letters
        each webhook still has. Returns how many events moved. Called by the service's sweep loop."""
        moved = 0
        now = self._pipeline.clock()
        for key, worker in list(self._workers.items()):
            lane = worker.lane
            if self._shared and key not in self._owned:
                continue
            try:
                max_age = lane.limits.max_age
                oldest = lane.queue.oldest_received_at
                expired = max_age is not None and lane.queue.total and (oldest is None or oldest < now - max_age)
                if expired or lane.over_cap:
                    moved += await worker.dead_letter_overdue(now - max_age if max_age is not None else None)
                if refresh_dead_letters and lane.snapshot().dead_letters:
                    state = await self._store.lane_state(key)
                    lane.dead_letters_kept(state.dead_letters, state.dead_lettered_since)
                    self._notify(lane)
            except StoreUnavailable as exc:
                log.error("queue limits of %s not applied: store unavailable: %s", key, exc)
        return moved

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def idle(self, within: float = 30.0) -> None:
        """Wait until no lane has work left, retries included (tests and benchmarks)."""
        await self._wait(lambda w: w.busy, within)

    async def settled(self, within: float = 30.0) -> None:
        """Wait until no lane can send now: every lane is idle or waiting for its retry time (tests that drive the
        clock by hand)."""
        await self._wait(lambda w: w.sending, within)

    async def _wait(self, working: Callable[[LaneWorker], bool], within: float) -> None:
        deadline = time.monotonic() + within
        while self._emitting or self._unrouted.busy or any(working(w) for w in self._workers.values()):
            if time.monotonic() > deadline:
                raise TimeoutError("dispatcher still busy")
            await asyncio.sleep(0.005)
        self._reports.flush()  # settled means the observer has heard of it too

    async def stop(self) -> None:
        self._stopping = True
        await self._unrouted.stop()
        if self._emitting:  # trigger events being committed: let them land (they are a few store writes)
            await asyncio.wait(set(self._emitting), timeout=10)
        await asyncio.gather(*(w.close() for w in self._workers.values()), return_exceptions=True)
        self._reports.flush()

    def _notify(self, lane: Lane) -> None:
        if self._shared and lane.key not in self._owned:
            return  # a parked lane knows nothing worth reporting: its owner reports
        self._reports.mark(lane)  # the observer hears of it at the end of this loop turn (``lane_reports``)
        kind = lane.transition()
        if kind is not None:
            self._transitioned(lane, kind)
