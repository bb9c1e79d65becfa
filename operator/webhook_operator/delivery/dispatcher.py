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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from webhook_operator.api.encoding import compact_json
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.outcomes import NullObserver, StateObserver, WebhookSnapshot
from webhook_operator.delivery.attempt import AttemptPipeline
from webhook_operator.delivery.lane import Lane
from webhook_operator.delivery.parsed import ParsedEvents
from webhook_operator.delivery.queue import LaneQueue
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.delivery.worker import LaneWorker
from webhook_operator.routing import CompiledFilters, FilterError
from webhook_operator.store.base import AttemptRecord, RoutedEvent, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmitResult:
    accepted: int
    duplicates: int
    queued: int  # deliveries queued (an event matching three webhooks counts three)


def encode_event(event: ChangeEvent) -> bytes:
    return compact_json(event.wire())


class Dispatcher:
    def __init__(self, store: Store, pipeline: AttemptPipeline, *, retry: RetryPolicy | None = None,
                 observer: StateObserver | None = None) -> None:  # fmt: skip
        self._store = store
        self._pipeline = pipeline
        self._policy = retry or RetryPolicy()
        self._observer = observer or NullObserver()
        self._workers: dict[str, LaneWorker] = {}
        self._parsed = ParsedEvents()
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
            if worker is None:
                state = await self._store.lane_state(target.key)
                queue = await LaneQueue.load(self._store, target.key, state.pending)
                lane = Lane(target, filters, state, queue, self._policy)
                worker = LaneWorker(lane, store=self._store, pipeline=self._pipeline, parsed=self._parsed,
                                    notify=self._notify)  # fmt: skip
                self._workers[target.key] = worker
            elif worker.lane.reconfigure(target, filters):
                await self._store.save_retry_state(target.key, worker.lane.retry)
            self._notify(worker.lane)
            if not self._stopping:
                worker.kick()
            return worker.lane.snapshot()

    async def unregister(self, key: str) -> None:
        """The Webhook is gone: stop its worker and drop its queue and retry state."""
        self._register_locks.pop(key, None)
        worker = self._workers.pop(key, None)
        if worker is not None:
            await worker.close()
        await self._store.purge(key)

    def snapshot(self, key: str) -> WebhookSnapshot | None:
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
        lanes = [w.lane for w in self._workers.values() if w.lane.accepting]
        routed = [
            RoutedEvent(
                event.id,
                bodies[i] if bodies is not None else encode_event(event),
                [lane.key for lane in lanes if lane.filters.matches(event)],
            )
            for i, event in enumerate(events)
        ]
        # Shielded: if the caller is cancelled (its client went away) the commit still happens, and so must the
        # routing into the lanes, or committed events would sit on disk undelivered until a restart.
        return await asyncio.shield(self._enqueue_and_route(events, routed))

    async def _enqueue_and_route(self, events: Sequence[ChangeEvent], routed: list[RoutedEvent]) -> SubmitResult:
        result = await self._store.enqueue(routed)
        for event, seq in zip(events, result.seqs, strict=True):
            if seq is not None:
                self._parsed.put(seq, event)
        queued = 0
        for key, entries in result.queued.items():
            worker = self._workers.get(key)
            if worker is None:  # unregistered while we were committing: the purge removes its entries
                continue
            worker.append(entries)
            queued += len(entries)
        return SubmitResult(result.accepted, result.duplicates, queued)

    # -- operator actions on a lane --------------------------------------------------------------------------

    async def resume(self, key: str, who: str = "operator") -> bool:
        """Send the held batch now: leaves retryLimitReached/failed, or cuts an awaitingRetry wait short (the retry
        schedule starts over). False when nothing is held or paused."""
        return await self._workers[key].resume(who)

    async def skip(self, key: str, who: str = "operator") -> list[str]:
        """Drop the held batch into the dead letters (logged with who asked) and carry on with the next one."""
        return await self._workers[key].skip(who)

    async def redeliver(self, key: str, event_ids: Sequence[str], record: AttemptRecord) -> list[str]:
        """Queue stored events again for ``key``, in the given order, behind what it has queued; ``record`` (who
        asked) goes into its log in the same commit. Returns the ids queued (those the store still holds)."""
        return [e.event_id for e in await self._workers[key].requeue(event_ids, record)]

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
        while any(working(w) for w in self._workers.values()):
            if time.monotonic() > deadline:
                raise TimeoutError("dispatcher still busy")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.gather(*(w.close() for w in self._workers.values()), return_exceptions=True)

    def _notify(self, lane: Lane) -> None:
        try:
            self._observer.webhook_changed(lane.snapshot())
        except Exception:  # an observer bug must never stop delivery
            log.exception("state observer failed for %s", lane.key)
