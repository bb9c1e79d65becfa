"""The dispatcher: route accepted events to webhook lanes, deliver each lane in order, retry, report state.

Flow per event: ``submit`` matches it against every enabled webhook's precompiled filters, commits it and its
per-webhook queue entries in one store transaction (so a 202 means durable *and* routed), then wakes the lanes.
Each lane's worker sends one batch at a time, bounded globally by a semaphore so many webhooks share a fixed number
of concurrent requests. Workers exist only while a lane has work, so ten thousand idle webhooks cost no tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from webhook_operator import __version__
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.outcomes import NullObserver, StateObserver, WebhookSnapshot
from webhook_operator.delivery.lane import PAGE, PAUSED_FAILED, PAUSED_LIMIT, Lane
from webhook_operator.delivery.request import build_request
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.delivery.sender import Outcome, OutcomeKind, Sender
from webhook_operator.delivery.target import WebhookTarget, mask, mask_credentials
from webhook_operator.formats.base import FormatError
from webhook_operator.routing import CompiledFilters, FilterError
from webhook_operator.store.base import (
    AttemptOutcome,
    AttemptRecord,
    QueuedEvent,
    RoutedEvent,
    Store,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

_PARSED_CACHE = 20_000


@dataclass(frozen=True)
class DispatcherConfig:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_concurrency: int = 64
    user_agent: str = f"webhook-operator/{__version__}"
    #: Called with every attempt record (metrics); must be cheap and must not raise.
    on_attempt: Callable[[AttemptRecord], None] | None = None


@dataclass(frozen=True)
class SubmitResult:
    accepted: int
    duplicates: int
    queued: int  # deliveries queued (an event matching three webhooks counts three)


def encode_event(event: ChangeEvent) -> bytes:
    return json.dumps(event.wire(), separators=(",", ":"), ensure_ascii=False).encode()


class Dispatcher:
    def __init__(self, store: Store, sender: Sender, *, config: DispatcherConfig | None = None,
                 observer: StateObserver | None = None, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self._store = store
        self._sender = sender
        self._config = config or DispatcherConfig()
        self._observer = observer or NullObserver()
        self._clock = clock
        self._lanes: dict[str, Lane] = {}
        self._sem = asyncio.Semaphore(self._config.max_concurrency)
        self._parsed: OrderedDict[int, ChangeEvent] = OrderedDict()
        self._stopping = False
        self._register_locks: dict[str, asyncio.Lock] = {}

    # -- registration --------------------------------------------------------------------------------------

    async def register(self, target: WebhookTarget) -> WebhookSnapshot:
        """Add or replace a webhook. A changed configuration resumes a paused or retrying webhook at once.
        Filters that do not compile make it a configuration error (state failed), never an exception here."""
        async with self._register_locks.setdefault(target.key, asyncio.Lock()):
            return await self._register(target)

    async def _register(self, target: WebhookTarget) -> WebhookSnapshot:
        lane = self._lanes.get(target.key)
        try:
            filters = CompiledFilters.compile(target.spec.event_filters)
        except FilterError as exc:
            target = dataclasses.replace(target, config_error=target.config_error or str(exc))
            # Keep routing by the last good filters so nothing is dropped while the spec is being fixed.
            filters = lane.filters if lane is not None else CompiledFilters.compile([])
        if lane is None:
            retry = await self._store.retry_state(target.key)
            counters = await self._store.counters(target.key)
            page = await self._store.pending(target.key, 0, PAGE)
            total = await self._store.pending_count(target.key)
            lane = Lane(target, filters, retry, counters, deque(page), more_on_disk=total > len(page),
                        last_qid=page[-1].qid if page else 0, pending_total=total)  # fmt: skip
            lane.wake = asyncio.Event()
            self._lanes[target.key] = lane
        else:
            changed = lane.target.delivery_shape() != target.delivery_shape()
            lane.target, lane.filters = target, filters
            if changed and (lane.resume() or lane.retry.held_qids):
                await self._store.save_retry_state(target.key, lane.retry)
        self._notify(lane)
        self._kick(lane)
        return lane.snapshot()

    async def unregister(self, key: str) -> None:
        """The Webhook is gone: stop its worker and drop its queue and retry state."""
        self._register_locks.pop(key, None)
        lane = self._lanes.pop(key, None)
        if lane is not None and lane.task is not None:
            lane.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lane.task
        await self._store.purge(key)

    def snapshot(self, key: str) -> WebhookSnapshot | None:
        lane = self._lanes.get(key)
        return lane.snapshot() if lane else None

    def keys(self) -> list[str]:
        return list(self._lanes)

    # -- intake --------------------------------------------------------------------------------------------

    async def submit(self, events: Sequence[ChangeEvent], bodies: Sequence[bytes] | None = None) -> SubmitResult:
        """Durably accept and route events; returns after the commit. Raises StoreUnavailable (nothing taken)."""
        lanes = [lane for lane in self._lanes.values() if lane.accepting]
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
                self._cache(seq, event)
        queued = 0
        for key, entries in result.queued.items():
            lane = self._lanes.get(key)
            if lane is None:  # unregistered while we were committing: the purge removes its entries
                continue
            lane.append(entries)
            queued += len(entries)
            self._notify(lane)
            self._kick(lane)
        return SubmitResult(result.accepted, result.duplicates, queued)

    # -- operations ----------------------------------------------------------------------------------------

    def target(self, key: str) -> WebhookTarget:
        """The registered target of ``key``; KeyError when the webhook is not registered."""
        return self._lanes[key].target

    async def resume(self, key: str, who: str = "operator") -> bool:
        """Send the held batch now: leaves retryLimitReached/failed, or cuts an awaitingRetry wait short (the retry
        schedule starts over). False when nothing is held or paused."""
        lane = self._lanes[key]
        async with lane.lock:
            return await asyncio.shield(self._resume(lane, who))

    async def _resume(self, lane: Lane, who: str) -> bool:
        key = lane.key
        if lane.retry.paused is None and not lane.retry.held_qids:
            return False
        lane.resume()
        await self._store.save_retry_state(key, lane.retry)
        await self._store.log(self._note(lane, AttemptOutcome.RESUMED, f"resumed by {who}"))
        self._notify(lane)
        self._kick(lane)
        return True

    async def skip(self, key: str, who: str = "operator") -> list[str]:
        """Drop the held batch into the dead letters (logged with who asked) and carry on with the next one."""
        lane = self._lanes[key]
        async with lane.lock:
            return await asyncio.shield(self._skip(lane, who))

    async def _skip(self, lane: Lane, who: str) -> list[str]:
        key = lane.key
        held_qids = set(lane.retry.held_qids)
        held = [e for e in lane.queue if e.qid in held_qids]
        if not held or len(held) != len(held_qids):
            return []  # nothing held (or not all of it in memory): never dead-letter events that were not tried
        record = self._note(lane, AttemptOutcome.SKIPPED, f"held batch skipped by {who}", batch=held)
        await self._store.skip(key, [e.qid for e in held], record)
        lane.pop(held)
        lane.resume()
        lane.retry.held_qids = []
        self._notify(lane)
        self._kick(lane)
        return [e.event_id for e in held]

    async def redeliver(self, key: str, event_ids: Sequence[str], record: AttemptRecord) -> list[str]:
        """Queue stored events again for ``key``, in the given order, behind what it has queued; ``record`` (who
        asked) goes into its log in the same commit. Returns the ids queued (those the store still holds)."""
        lane = self._lanes[key]

        async def requeue() -> list[QueuedEvent]:
            entries = await self._store.requeue(key, event_ids, record)
            if entries and self._lanes.get(key) is lane:
                lane.append(entries)
                self._notify(lane)
                self._kick(lane)
            return entries

        return [e.event_id for e in await asyncio.shield(requeue())]

    async def idle(self, within: float = 30.0) -> None:
        """Wait until no lane has a runnable batch (tests and benchmarks)."""
        deadline = time.monotonic() + within
        while any(lane.task is not None for lane in self._lanes.values()):
            if time.monotonic() > deadline:
                raise TimeoutError("dispatcher still busy")
            await asyncio.sleep(0.005)

    async def _confirm(self, lane: Lane) -> None:
        """Wait until the lane's previous completion is committed. A failed commit is written again until it
        succeeds: that batch is already out of the in-memory queue, so giving up would let a restart deliver it
        again behind newer events."""
        while lane.commit is not None:
            future, (qids, record) = lane.commit
            try:
                await future
                lane.commit = None
            except StoreUnavailable as exc:
                log.error("recording a delivery for %s failed: %s; writing it again in 1 s", lane.key, exc)
                await asyncio.sleep(1.0)
                lane.commit = (asyncio.ensure_future(self._store.complete(lane.key, qids, record)), (qids, record))

    async def stop(self) -> None:
        self._stopping = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        commits = [lane.commit[0] for lane in self._lanes.values() if lane.commit is not None]
        await asyncio.gather(*commits, return_exceptions=True)  # record what was delivered before closing

    # -- workers -------------------------------------------------------------------------------------------

    def _kick(self, lane: Lane) -> None:
        if self._stopping:
            return
        if lane.task is None:
            lane.task = asyncio.create_task(self._run(lane), name=f"lane:{lane.key}")
        elif lane.wake is not None:
            lane.wake.set()

    async def _run(self, lane: Lane) -> None:
        try:
            while self._lanes.get(lane.key) is lane:
                if lane.retry.paused or lane.target.config_error or not lane.target.spec.enabled:
                    return
                wait = lane.waiting_for(self._clock())
                if wait is not None:
                    assert lane.wake is not None
                    lane.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lane.wake.wait(), wait)
                    continue
                if not lane.queue:
                    if lane.more_on_disk:
                        await self._page_in(lane)
                        continue
                    return
                try:
                    async with lane.lock:
                        if lane.retry.paused or not lane.queue:
                            continue  # a skip or resume changed things while we waited for the lock
                        await self._attempt(lane, lane.next_batch())
                except StoreUnavailable as exc:
                    log.error("store unavailable while delivering for %s: %s; retrying in 1 s", lane.key, exc)
                    await asyncio.sleep(1.0)
                except Exception:  # a bug must not silently stall the lane until the next event
                    log.exception("delivery for %s failed unexpectedly; retrying in 1 s", lane.key)
                    await asyncio.sleep(1.0)
        finally:
            lane.task = None

    async def _page_in(self, lane: Lane) -> None:
        lane.disk_dirty = False
        page = await self._store.pending(lane.key, lane.last_qid, PAGE)
        lane.queue.extend(page)
        if page:
            lane.last_qid = page[-1].qid
        # Entries appended (and left on disk) while we read may be missing from this page: read again then.
        if len(page) < PAGE and not lane.disk_dirty:
            lane.more_on_disk = False

    def _cache(self, seq: int, event: ChangeEvent) -> None:
        self._parsed[seq] = event
        if len(self._parsed) > _PARSED_CACHE:
            self._parsed.popitem(last=False)

    def _event(self, entry: QueuedEvent) -> ChangeEvent:
        event = self._parsed.get(entry.seq)
        if event is None:
            event = ChangeEvent.model_validate_json(entry.body)
            self._cache(entry.seq, event)
        return event

    async def _attempt(self, lane: Lane, batch: list[QueuedEvent]) -> None:
        delivery_id = Lane.delivery_id(lane.key, batch)
        started = self._clock()
        try:
            request = build_request(lane.target, [self._event(e) for e in batch], delivery_id, started,
                                    user_agent=self._config.user_agent)  # fmt: skip
        except FormatError as exc:
            outcome = Outcome(OutcomeKind.PERMANENT, None, 0.0, f"payload could not be rendered: {exc}")
        else:
            async with self._sem:
                outcome = await self._sender.send(request)
        await self._record(lane, batch, delivery_id, started, outcome)

    async def _record(self, lane: Lane, batch: list[QueuedEvent], delivery_id: str, started: float,
                      outcome: Outcome) -> None:  # fmt: skip
        secrets = lane.target.sensitive_values
        error = mask_credentials(mask(outcome.error, secrets) or "") or None
        body = mask_credentials(mask(outcome.response_body, secrets) or "")
        retry = lane.retry
        record = AttemptRecord(
            webhook=lane.key, delivery_id=delivery_id, event_ids=[e.event_id for e in batch],
            attempt=retry.attempts + 1, started_at=started, duration_ms=outcome.duration_ms,
            outcome=AttemptOutcome.DELIVERED if outcome.ok else AttemptOutcome.FAILED,
            status_code=outcome.status_code, error=error, response_body=body,
        )  # fmt: skip
        if self._config.on_attempt is not None:
            self._config.on_attempt(record)
        if outcome.ok:
            # Pipelined: the next batch may go out while this completion commits, but never two unconfirmed
            # completions per lane, so a crash repeats at most the batches of one round trip.
            await self._confirm(lane)
            qids = [e.qid for e in batch]
            lane.commit = (asyncio.ensure_future(self._store.complete(lane.key, qids, record)), (qids, record))
            lane.pop(batch)
            lane.counters.delivered += len(batch)
            lane.counters.last_success_at = started + outcome.duration_ms / 1000
            retry.held_qids, retry.attempts, retry.next_attempt_at = [], 0, None
            lane.last_error = None
        else:
            now = self._clock()
            retry.held_qids = [e.qid for e in batch]
            retry.attempts += 1
            retry.last_failed_at = now
            retry.last_status_code = outcome.status_code
            retry.last_reason = error or (f"HTTP {outcome.status_code}" if outcome.status_code else "failed")
            if outcome.kind is OutcomeKind.PERMANENT:
                retry.paused, retry.next_attempt_at = PAUSED_FAILED, None
                lane.last_error = retry.last_reason
            else:
                delay = self._config.retry.delay(retry.attempts, outcome.retry_after)
                if delay is None:
                    retry.paused, retry.next_attempt_at = PAUSED_LIMIT, None
                else:
                    retry.next_attempt_at = now + delay
            lane.counters.failed += 1
            try:
                await self._confirm(lane)
                await self._store.fail(lane.key, record, retry)
            finally:
                self._notify(lane)  # the retry state changed in memory either way: status must say so
            return
        self._notify(lane)

    def _note(self, lane: Lane, outcome: AttemptOutcome, note: str, *,
              batch: list[QueuedEvent] | None = None) -> AttemptRecord:  # fmt: skip
        batch = batch or []
        return AttemptRecord(
            webhook=lane.key, delivery_id=Lane.delivery_id(lane.key, batch) if batch else "-",
            event_ids=[e.event_id for e in batch], attempt=lane.retry.attempts, started_at=self._clock(),
            duration_ms=0.0, outcome=outcome, note=note,
        )  # fmt: skip

    def _notify(self, lane: Lane) -> None:
        try:
            self._observer.webhook_changed(lane.snapshot())
        except Exception:  # an observer bug must never stop delivery
            log.exception("state observer failed for %s", lane.key)
