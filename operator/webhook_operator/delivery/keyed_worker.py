"""The worker of a lane that delivers in parallel (``spec.delivery.ordering`` entity or none).

Up to ``maxInFlight`` batches are *outstanding* at once: in flight, or held for a retry. Held batches count, so a
receiver that is down ends with at most ``maxInFlight`` keys held (and as many requests per retry round), never one
per entity in the queue. With ordering entity a batch holds only events of one entity and an entity has at most one
batch outstanding, so its events reach the receiver in order however the others fare; with ordering none any
events form a batch. A failed batch is held with its own schedule (``retry.next_hold_state``); the other keys
flow.

Writes go through ``keyed_writes.RetryWrites``: concurrent completions of different keys never write back a stale
copy of each other's holds.

Resume, skip, the queue limits and the hand-over take the lane lock and stop new batches from starting meanwhile;
batches already in flight finish (their entries are protected from the limits; a skip leaves a held batch that is
being retried right now alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from webhook_operator.api.delivery_limits import Ordering
from webhook_operator.delivery.attempt import AttemptPipeline, delivery_id, record
from webhook_operator.delivery.completion import BACKOFF, DRAIN_GRACE
from webhook_operator.delivery.keyed_writes import RetryWrites
from webhook_operator.delivery.lane import Lane
from webhook_operator.delivery.parsed import ParsedEvents
from webhook_operator.delivery.queue import KeyedQueue
from webhook_operator.delivery.related import FallbackPort
from webhook_operator.delivery.retry import hold_of, is_clear
from webhook_operator.delivery.worker import LaneWorker, WorkerStore, decode
from webhook_operator.store.base import (
    AttemptOutcome,
    LeaseLost,
    QueuedEvent,
    RetryState,
    StoreUnavailable,
)

log = logging.getLogger(__name__)


class KeyedLaneWorker(LaneWorker):
    def __init__(self, lane: Lane, *, store: WorkerStore, pipeline: AttemptPipeline, parsed: ParsedEvents,
                 notify: Callable[[Lane], None], fallback: FallbackPort | None = None) -> None:  # fmt: skip
        super().__init__(lane, store=store, pipeline=pipeline, parsed=parsed, notify=notify, fallback=fallback)
        assert isinstance(lane.queue, KeyedQueue)
        self._queue: KeyedQueue = lane.queue
        self._running: dict[str, asyncio.Task[None]] = {}  # hold key -> the batch task
        self._in_flight_qids: dict[str, tuple[int, ...]] = {}
        self._exclusive_n = 0
        self._writes = RetryWrites(store, lane.key, lambda: self.lane.retry)
        self.peak_in_flight = 0  # observability and tests: most batches in flight at once

    @property
    def ordering(self) -> Ordering:
        return self.lane.target.spec.delivery_ordering

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def sending(self) -> bool:
        return bool(self._running) or bool(self._writes.pending) or super().sending

    @property
    def busy(self) -> bool:
        return bool(self._running) or bool(self._writes.pending) or super().busy

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._task, self._limiting, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._writes.pending:  # completions being recorded: the grace a webhook lane gives its last one
            _, late = await asyncio.wait(set(self._writes.pending), timeout=DRAIN_GRACE)
            for write in late:
                write.cancel()
            if late:
                log.error("%d deliveries of %s could not be recorded before shutdown; they will be sent again",
                          len(late), self.lane.key)  # fmt: skip

    # -- the loop: start what may start, page, wait ------------------------------------------------------------

    async def _run(self) -> None:
        lane = self.lane
        try:
            while not self._closed:
                self._wake.clear()
                if not lane.runnable:
                    if self._running:  # paused: let what is in flight finish, then hand over or stop
                        await self._wake.wait()
                        continue
                    if self._fallback_due() is None or not await self._hand_over_safely():
                        return
                    continue
                wait = self._start()
                if self._queue.wants_page(max(1, lane.target.spec.delivery_max_in_flight)) and not self._exclusive_n:
                    try:
                        async with self._lock:
                            await self._queue.page_in(self._store, lane.key)
                    except StoreUnavailable as exc:
                        log.error("store unavailable while reading the queue of %s: %s; retrying in 1 s", lane.key, exc)
                        await asyncio.sleep(BACKOFF)
                    continue
                if not self._running and wait is None and not self._queue.ready and not self._exclusive_n:
                    return  # nothing in flight, nothing held, nothing waiting: idle until the next append
                self._waiting = not self._running
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                finally:
                    self._waiting = False
        except Exception:  # a bug must not silently stall the lane until the next event
            log.exception("delivery for %s failed unexpectedly", lane.key)
        finally:
            self._task = None
            if not self._closed and (self._queue.ready or lane.retry.holds) and lane.runnable:
                asyncio.get_running_loop().call_later(BACKOFF, self.kick)

    def _start(self) -> float | None:
        """Start every batch that may go now: due holds first, then new batches while fewer than maxInFlight are
        outstanding. Returns seconds until the next hold is due (None: none waits for a time)."""
        if self._exclusive_n:
            return None
        lane, now = self.lane, self._clock()
        if self.may_send is not None and not self.may_send(lane.key):
            # Work sharing: handed over or lease gone. Start nothing more, and let the batches in flight finish (a
            # hand-over waits for them, so nothing is sent twice); a lost lease's lane is dropped by the manager,
            # and any write it still makes is refused by the store's fence.
            return None
        spec = lane.target.spec
        size, cap = spec.delivery_batch_size, spec.delivery_max_in_flight
        wait: float | None = None
        for hold in lane.retry.holds:
            if hold.key in self._running:
                continue
            if len(self._running) >= cap:  # maxInFlight lowered while more were held: the rest wait their turn
                break
            if hold.next_attempt_at is not None and hold.next_attempt_at > now:
                left = hold.next_attempt_at - now
                wait = left if wait is None else min(wait, left)
                continue
            entries = self._queue.find(hold.qids)
            if entries is None:
                if self._queue.on_disk:
                    continue  # not paged in yet (after a restart): the page reads bring it
                entries = self._queue.found(hold.qids)  # some left the store underneath: send what is left
                if not entries:
                    lane.hold_dropped(hold.key)
                    self._queue.release(self._queue_key(hold.key))
                    continue
                lane.hold_shrunk(hold.key, [e.qid for e in entries])
            if len(entries) > size:  # batchSize lowered while it was held
                self._queue.put_back(self._queue_key(hold.key), entries[size:])
                entries = entries[:size]
                lane.hold_shrunk(hold.key, [e.qid for e in entries])
            self._launch(self._queue_key(hold.key), hold.key, entries)
        held_idle = sum(1 for h in lane.retry.holds if h.key not in self._running)
        # In flight plus held at most ``cap``; completions still committing at most ``cap`` more.
        while len(self._running) + held_idle < cap and len(self._writes.pending) < cap:
            taken = self._queue.take(size)
            if taken is None:
                break
            key, batch = taken
            self._launch(key, key if self._queue_keyed else f"batch {batch[0].qid}", batch)
        return wait

    @property
    def _queue_keyed(self) -> bool:
        return self.ordering is Ordering.ENTITY

    def _queue_key(self, hold_key: str) -> str:
        return hold_key if self._queue_keyed else ""

    def _launch(self, key: str, hold_key: str, batch: list[QueuedEvent]) -> None:
        self._in_flight_qids[hold_key] = tuple(e.qid for e in batch)
        self._running[hold_key] = asyncio.create_task(self._send(key, hold_key, batch),
                                                      name=f"lane:{self.lane.key}:{hold_key[:64]}")  # fmt: skip
        self.peak_in_flight = max(self.peak_in_flight, len(self._running))

    # -- one batch ---------------------------------------------------------------------------------------------

    async def _send(self, key: str, hold_key: str, batch: list[QueuedEvent]) -> None:
        lane = self.lane
        try:
            events, undecodable = decode(self._parsed, batch)
            if undecodable:
                await self._write(self._drop_undecodable(key, hold_key, batch, undecodable))
                return
            hold = hold_of(lane.retry, hold_key)
            attempt = await self._pipeline.run(lane.target, events, delivery=delivery_id(lane.key, batch),
                                               attempt=lambda: (hold.attempts if hold else 0) + 1)  # fmt: skip
            lane.attempted_key(hold_key, batch, attempt, self._clock())
            if attempt.outcome.ok:  # recorded in the background (the slot is free); the key waits for the commit
                write = self._writes.track(self._writes.completed([e.qid for e in batch], attempt.record))
                write.add_done_callback(functools.partial(self._confirmed, key))
            else:
                await self._write(self._writes.serial(lambda retry: self._store.fail(lane.key, attempt.record, retry)))
        except LeaseLost as exc:
            self._lease_lost(exc)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not wedge the key, nor loop hot: after a pause the batch waits again
            log.exception("delivery of a batch of %s failed unexpectedly; trying it again in 1 s", lane.key)
            await asyncio.sleep(BACKOFF)
            if hold_of(lane.retry, hold_key) is None:  # a held batch stays held (and goes at its time)
                self._queue.put_back(key, batch)
                self._queue.release(key)
        finally:
            self._running.pop(hold_key, None)
            self._in_flight_qids.pop(hold_key, None)
            self._notify(lane)
            self._waiting = False
            self._wake.set()

    def _confirmed(self, key: str, write: asyncio.Future[None]) -> None:
        """A completion committed: the key's next batch may go. Never two unconfirmed completions per key, so a
        crash can only repeat a key's last delivered batch, never put an older one after a newer one."""
        if write.cancelled():
            return  # shutting down: the batch is sent again after the restart
        exc = write.exception()
        if isinstance(exc, LeaseLost):
            self._lease_lost(exc)
            return
        if exc is not None:  # a bug: logged, and the key is not wedged on it
            log.error("recording a delivery for %s failed unexpectedly", self.lane.key, exc_info=exc)
        self._queue.release(key)
        self.kick()  # the loop may have gone idle meanwhile

    async def _write(self, write: Awaitable[None]) -> None:
        """A store write that must happen even if the batch task is cancelled (shutdown), within the close grace."""
        await asyncio.shield(self._writes.track(write))

    async def _drop_undecodable(self, key: str, hold_key: str, batch: list[QueuedEvent],
                                bad: list[tuple[QueuedEvent, str]]) -> None:  # fmt: skip
        """Dead-letter what cannot be decoded; the rest of the batch waits again at the front of its key (a held
        batch loses its hold: batched afresh, its schedule starts over)."""
        lane, now = self.lane, self._clock()
        for entry, reason in bad:
            line = record(lane.key, AttemptOutcome.SKIPPED, delivery=delivery_id(lane.key, [entry]),
                          event_ids=[entry.event_id], started_at=now,
                          note=f"event could not be decoded: {reason}; dead-lettered")  # fmt: skip
            await self._writes.until_written(lambda: self._store.dead_letter(lane.key, [entry.qid], line))  # noqa: B023
            lane.undecodable(entry, now)
            log.warning("event %s for %s could not be decoded and was dead-lettered: %s", entry.event_id, lane.key,
                        reason)  # fmt: skip
        gone = {e.qid for e, _ in bad}
        self._queue.put_back(key, [e for e in batch if e.qid not in gone])
        if hold_of(lane.retry, hold_key) is not None:
            lane.hold_dropped(hold_key)
            await self._writes.serial(lambda retry: self._store.save_retry_state(lane.key, retry))
        self._queue.release(key)

    def _lease_lost(self, exc: LeaseLost) -> None:
        """Another replica owns the webhook now: stop at once, nothing more sent or written from here (the batches
        in flight are cancelled: the new owner sends them again, at-least-once)."""
        super()._lease_lost(exc)
        for task in (self._task, *self._running.values()):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    # -- exclusive operations: no batch starts meanwhile --------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        self._exclusive_n += 1
        try:
            async with self._lock:
                yield
        finally:
            self._exclusive_n -= 1
            self._waiting = False  # busy until the woken loop decides again (``settled`` must not miss it)
            self._wake.set()

    async def _hand_over_safely(self) -> bool:
        try:
            async with self._exclusive():
                to = self._fallback_due()
                return to is not None and await asyncio.shield(self._hand_over(to))
        except StoreUnavailable as exc:
            log.error("store unavailable while handing %s to its fallback: %s; retrying in 1 s", self.lane.key, exc)
        except LeaseLost as exc:
            self._lease_lost(exc)
            return False
        except Exception:
            log.exception("handing %s to its fallback failed unexpectedly; retrying in 1 s", self.lane.key)
        await asyncio.sleep(BACKOFF)
        return True

    async def _hand_over(self, to: str) -> bool:
        """As the seed's lane (every held batch first, in qid order), after every batch in flight finished."""
        lane = self.lane
        activated = lane.fallback is None
        held = lane.retry.held_qids
        line, to_line = self._hand_over_lines(to)
        moved: list[QueuedEvent] = []

        async def write(_current: RetryState) -> None:
            retry = dataclasses.replace(lane.retry, held_qids=(), holds=(), fallback=to)
            moved.extend(await self._store.hand_over(lane.key, to, held, line, to_line, retry))
            lane.handed_over(retry, moved, max((e.qid for e in moved), default=0))

        await self._writes.serial(write)
        return self._handed_over(to, moved, activated)

    async def resume(self, who: str) -> bool:
        async with self._exclusive():
            return await asyncio.shield(self._resume(who))

    async def hand_back(self, note: str) -> bool:
        async with self._exclusive():
            return self.lane.fallback is not None and await asyncio.shield(self._resume("", note))

    async def _resume(self, who: str, note: str = "") -> bool:
        lane = self.lane
        if not lane.resumed():  # every hold goes now, its schedule restarted; the webhook is no longer paused
            return False
        await self._writes.serial(lambda retry: self._store.save_retry_state(lane.key, retry))
        await self._store.log(record(lane.key, AttemptOutcome.RESUMED, attempt=lane.retry.attempts,
                                     started_at=self._clock(), note=note or f"resumed by {who}"))  # fmt: skip
        self._changed()
        return True

    async def skip(self, who: str) -> list[str]:
        async with self._exclusive():
            return await asyncio.shield(self._skip(who))

    async def _skip(self, who: str) -> list[str]:
        """Every held batch that is not being retried right now goes to the dead letters, in one commit and one
        delivery-log line; their keys send their next events."""
        lane = self.lane
        keys, entries = [], []
        for hold in lane.retry.holds:
            found = self._queue.find(hold.qids)
            if hold.key in self._running or found is None:
                continue  # in flight (its outcome decides), or not all in memory: never skip what was not tried
            keys.append(hold.key)
            entries.extend(found)
        if not entries:
            return []
        entries.sort(key=lambda e: e.qid)
        ids = [e.event_id for e in entries]
        line = record(lane.key, AttemptOutcome.SKIPPED, delivery=delivery_id(lane.key, entries), event_ids=ids,
                      attempt=lane.retry.attempts, started_at=self._clock(),
                      note=f"held batches of {len(keys)} key(s) skipped by {who}")  # fmt: skip

        async def write(_current: RetryState) -> None:
            await self._store.skip(lane.key, [e.qid for e in entries], line)  # clears the stored retry state ...
            lane.holds_skipped(keys, entries, self._clock())
            if not is_clear(lane.retry):  # ... so what is still held (being retried now) is written back at once
                await self._store.save_retry_state(lane.key, lane.retry)

        await self._writes.serial(write)
        for key in keys:
            self._queue.release(self._queue_key(key))
        self._changed()
        return ids

    async def save_retry_state(self) -> None:
        """Through the lane's one writer, so it never lands before (and is then undone by) an older state."""
        await self._writes.serial(lambda retry: self._store.save_retry_state(self.lane.key, retry))

    def _protected(self) -> tuple[int, ...]:
        qids = set(self.lane.retry.held_qids)
        for batch in self._in_flight_qids.values():
            qids.update(batch)
        return tuple(qids)

    async def dead_letter_overdue(self, received_before: float | None) -> int:
        """As the seed's lane, protecting every held batch and every batch in flight; nothing new starts meanwhile."""
        async with self._exclusive():
            return await asyncio.shield(self._dead_letter_overdue(received_before))
