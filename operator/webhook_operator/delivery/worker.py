"""The lane worker: next batch → attempt → record, one batch in flight per webhook.

A worker task exists only while its lane has work, so ten thousand idle webhooks cost no tasks. A successful
batch's completion commit is pipelined with the next request (``PipelinedCompletion``). Resume and skip take the
same lock as an attempt, so they never race a request in flight; requeue only appends behind the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from pydantic import ValidationError

from webhook_operator.api.events import ChangeEvent
from webhook_operator.delivery.attempt import AttemptPipeline, delivery_id, record
from webhook_operator.delivery.lane import Lane
from webhook_operator.delivery.parsed import ParsedEvents
from webhook_operator.delivery.retry import waiting_for
from webhook_operator.store.base import (
    AttemptOutcome,
    AttemptRecord,
    LaneStore,
    LogStore,
    QueuedEvent,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

#: Characters of a decode error kept in the delivery log line and the warning.
_MAX_REASON = 300

#: Pause before trying again after the store failed or a bug escaped an attempt: never a hot loop.
BACKOFF = 1.0
#: How long a shutdown waits for the last completion of a lane to commit.
DRAIN_GRACE = 10.0


def _decode_error(exc: Exception) -> str:
    """One line saying why an event could not be decoded (a ValidationError's first error, not its whole text)."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0] if errors else None
        where = ".".join(str(part) for part in first["loc"]) if first else ""
        reason = f"{where}: {first['msg']}" if first and where else (first["msg"] if first else str(exc))
    else:
        reason = f"{type(exc).__name__}: {exc}"
    reason = " ".join(reason.split())
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 1] + "…"


def decode(
    parsed: ParsedEvents, batch: Sequence[QueuedEvent]
) -> tuple[list[ChangeEvent], list[tuple[QueuedEvent, str]]]:
    """The batch's events, and the entries that cannot be decoded with why (stored before the intake's depth
    limit, or broken on disk): retrying those would wedge the lane forever."""
    events: list[ChangeEvent] = []
    undecodable: list[tuple[QueuedEvent, str]] = []
    for entry in batch:
        try:
            events.append(parsed.get(entry))
        except (ValueError, RecursionError) as exc:  # pydantic's ValidationError is a ValueError
            undecodable.append((entry, _decode_error(exc)))
    return events, undecodable


class WorkerStore(LaneStore, LogStore, Protocol):
    """A lane's queue and retry state, plus the log for the operator actions' lines."""


async def dead_letter(store: LaneStore, lane: Lane, entry: QueuedEvent, reason: str, now: float) -> None:
    """An event that cannot be decoded can never be sent: to the dead letters with the reason, once."""
    line = record(lane.key, AttemptOutcome.SKIPPED, delivery=delivery_id(lane.key, [entry]),
                  event_ids=[entry.event_id], attempt=lane.retry.attempts, started_at=now,
                  note=f"event could not be decoded: {reason}; dead-lettered")  # fmt: skip
    await asyncio.shield(store.skip(lane.key, [entry.qid], line))  # memory follows only what is stored
    lane.skipped([entry])
    log.warning("event %s for %s could not be decoded and was dead-lettered: %s", entry.event_id, lane.key, reason)


class PipelinedCompletion:
    """A lane's completion commit, pipelined with its next request: never two unconfirmed per lane, so a crash
    repeats at most the batches of one round trip.

    A write that fails is written again (every second) until it succeeds, in the background: that batch is already
    out of the in-memory queue, so giving up — or waiting for a next batch that may never come — would let a
    restart deliver it again behind newer events."""

    def __init__(self, store: LaneStore, key: str) -> None:
        self._store, self._key = store, key
        self._pending: asyncio.Task[None] | None = None

    def write(self, qids: list[int], line: AttemptRecord) -> None:
        self._pending = asyncio.ensure_future(self._until_written(qids, line))

    async def _until_written(self, qids: list[int], line: AttemptRecord) -> None:
        while True:
            try:
                await self._store.complete(self._key, qids, line)
                return
            except StoreUnavailable as exc:
                log.error("recording a delivery for %s failed: %s; writing it again in 1 s", self._key, exc)
                await asyncio.sleep(BACKOFF)

    async def confirm(self) -> None:
        """Wait until the previous completion is committed."""
        pending = self._pending
        if pending is not None:
            try:
                if pending.done():
                    pending.result()  # the common case on a busy lane: no wait, no shield to build
                else:
                    await asyncio.shield(pending)  # a stopping worker must not cancel the write
            finally:
                if pending.done():  # written, or failed for good (a bug): never wedge the lane on it
                    self._pending = None

    async def drain(self, grace: float = DRAIN_GRACE) -> None:
        """At shutdown: give an unconfirmed completion ``grace`` seconds to commit, then give up on it (the batch
        is then delivered again after the restart: at-least-once, never lost)."""
        if self._pending is not None and not self._pending.done():
            done, _ = await asyncio.wait({self._pending}, timeout=grace)
            if not done:
                self._pending.cancel()
                log.error("a delivery of %s could not be recorded before shutdown; it will be sent again", self._key)
        self._pending = None


class LaneWorker:
    def __init__(self, lane: Lane, *, store: WorkerStore, pipeline: AttemptPipeline, parsed: ParsedEvents,
                 notify: Callable[[Lane], None]) -> None:  # fmt: skip
        self.lane = lane
        self._store = store
        self._pipeline = pipeline
        self._clock = pipeline.clock
        self._parsed = parsed
        self._notify = notify
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._completion = PipelinedCompletion(store, lane.key)
        self._closed = False
        self._waiting = False

    @property
    def busy(self) -> bool:
        """Whether the lane has work: a batch runnable, in flight, or waiting for its retry time."""
        return self._task is not None

    @property
    def sending(self) -> bool:
        """Whether a batch is runnable or in flight now (a lane that only waits for its retry time is not)."""
        return self._task is not None and not self._waiting

    def kick(self) -> None:
        if self._closed:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"lane:{self.lane.key}")
        else:
            self._waiting = False  # busy from now: the woken loop decides again whether there is work
            self._wake.set()

    async def close(self) -> None:
        """Stop sending; what was delivered is recorded (the last completion write awaited) before the store closes."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._completion.drain()

    async def _run(self) -> None:
        lane = self.lane
        try:
            while not self._closed and lane.runnable:
                wait = waiting_for(lane.retry, self._clock())
                if wait is not None:
                    self._wake.clear()
                    self._waiting = True
                    try:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), wait)
                    finally:
                        self._waiting = False
                    continue
                if not len(lane.queue) and not lane.queue.needs_page:
                    return
                try:
                    if not len(lane.queue):
                        await lane.queue.page_in(self._store, lane.key)
                        continue
                    async with self._lock:
                        if lane.runnable and len(lane.queue):  # a skip or resume may have changed things
                            await self._deliver(lane.next_batch())
                except StoreUnavailable as exc:
                    log.error("store unavailable while delivering for %s: %s; retrying in 1 s", lane.key, exc)
                    await asyncio.sleep(BACKOFF)
                except Exception:  # a bug must not silently stall the lane until the next event
                    log.exception("delivery for %s failed unexpectedly; retrying in 1 s", lane.key)
                    await asyncio.sleep(BACKOFF)
        finally:
            self._task = None

    async def _deliver(self, batch: list[QueuedEvent]) -> None:
        lane = self.lane
        events, undecodable = decode(self._parsed, batch)
        for entry, reason in undecodable:
            await dead_letter(self._store, lane, entry, reason, self._clock())
            self._notify(lane)
        if undecodable:
            return  # the loop takes the next batch: the rest, in order, without the dead-lettered entries
        attempt = await self._pipeline.run(lane.target, events,
                                           delivery=delivery_id(lane.key, batch),
                                           attempt=lambda: lane.retry.attempts + 1)  # fmt: skip
        lane.attempted(batch, attempt, self._clock())
        try:
            await self._completion.confirm()
            if attempt.outcome.ok:
                self._completion.write([e.qid for e in batch], attempt.record)
            else:
                await self._store.fail(lane.key, attempt.record, lane.retry)
        finally:
            self._notify(lane)  # the state changed in memory either way: status must say so

    # -- operator actions (shielded: a caller that goes away must not leave memory and store apart) ---------

    async def resume(self, who: str) -> bool:
        async with self._lock:
            return await asyncio.shield(self._resume(who))

    async def _resume(self, who: str) -> bool:
        lane = self.lane
        if lane.resumed():
            await self._store.save_retry_state(lane.key, lane.retry)
            await self._store.log(record(lane.key, AttemptOutcome.RESUMED, attempt=lane.retry.attempts,
                                         started_at=self._clock(), note=f"resumed by {who}"))  # fmt: skip
            self._changed()
            return True
        return False

    async def skip(self, who: str) -> list[str]:
        async with self._lock:
            return await asyncio.shield(self._skip(who))

    async def _skip(self, who: str) -> list[str]:
        lane = self.lane
        held = lane.held()
        if not held:
            return []  # nothing held (or not all of it in memory): never dead-letter events that were not tried
        ids = [e.event_id for e in held]
        line = record(lane.key, AttemptOutcome.SKIPPED, delivery=delivery_id(lane.key, held), event_ids=ids,
                      attempt=lane.retry.attempts, started_at=self._clock(),
                      note=f"held batch skipped by {who}")  # fmt: skip
        await self._store.skip(lane.key, [e.qid for e in held], line)
        lane.skipped(held)
        self._changed()
        return ids

    async def requeue(self, event_ids: Sequence[str], line: AttemptRecord) -> list[QueuedEvent]:
        async def run() -> list[QueuedEvent]:
            entries = await self._store.requeue(self.lane.key, event_ids, line)
            if entries and not self._closed:
                self.append(entries)
            return entries

        return await asyncio.shield(run())

    def append(self, entries: Sequence[QueuedEvent]) -> None:
        self.lane.queue.append(entries)
        self._changed()

    def _changed(self) -> None:
        self._notify(self.lane)
        self.kick()
