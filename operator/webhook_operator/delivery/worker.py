"""The lane worker: next batch → attempt → record, one batch in flight per webhook.

A worker task exists only while its lane has work, so ten thousand idle webhooks cost no tasks. A successful
batch's completion commit is pipelined with the next request (``completion.PipelinedCompletion``). Resume and skip
take the same lock as an attempt, so they never race a request in flight; requeue only appends behind the queue.
With ``spec.delivery.ordering`` entity or none the lane is ``keyed_worker.KeyedLaneWorker`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from pydantic import ValidationError

from webhook_operator.api.events import ChangeEvent
from webhook_operator.delivery.attempt import AttemptPipeline, delivery_id, record
from webhook_operator.delivery.completion import BACKOFF, PipelinedCompletion
from webhook_operator.delivery.lane import Lane
from webhook_operator.delivery.parsed import ParsedEvents
from webhook_operator.delivery.related import FallbackPort
from webhook_operator.delivery.retry import waiting_for
from webhook_operator.store.base import (
    AttemptOutcome,
    AttemptRecord,
    LaneStore,
    LeaseLost,
    LogStore,
    QueuedEvent,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

#: Characters of a decode error kept in the delivery log line and the warning.
_MAX_REASON = 300

#: Queue entries moved to the dead letters per commit (and per delivery-log line) by the queue limits.
OVERDUE_PAGE = 1000


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
    lane.skipped([entry], now)
    log.warning("event %s for %s could not be decoded and was dead-lettered: %s", entry.event_id, lane.key, reason)


class LaneWorker:
    def __init__(self, lane: Lane, *, store: WorkerStore, pipeline: AttemptPipeline, parsed: ParsedEvents,
                 notify: Callable[[Lane], None], fallback: FallbackPort | None = None) -> None:  # fmt: skip
        self.lane = lane
        self._fallback = fallback
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
        self._limiting: asyncio.Task[int] | None = None
        self._limit_again = False

    @property
    def busy(self) -> bool:
        """Whether the lane has work: a batch runnable, in flight, or waiting for its retry time."""
        return self._task is not None or self._limiting is not None

    @property
    def sending(self) -> bool:
        """Whether a batch is runnable or in flight now (a lane that only waits for its retry time is not)."""
        return (self._task is not None and not self._waiting) or self._limiting is not None

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
        for task in (self._task, self._limiting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._completion.drain()

    async def _run(self) -> None:
        lane = self.lane
        try:
            while not self._closed and (lane.runnable or self._fallback_due() is not None):
                if not lane.runnable:  # stalled with a usable fallback: hand the queue over, then stop
                    try:
                        async with self._lock:
                            to = self._fallback_due()
                            if to is not None and not await asyncio.shield(self._hand_over(to)):
                                return  # nothing moved (the store had none left): never a hot loop
                    except LeaseLost as exc:
                        self._lease_lost(exc)
                        return
                    except StoreUnavailable as exc:
                        log.error("store unavailable while handing %s to its fallback: %s; retrying in 1 s",
                                  lane.key, exc)  # fmt: skip
                        await asyncio.sleep(BACKOFF)
                    except Exception:  # a bug must not silently stall the lane until the next event
                        log.exception("handing %s to its fallback failed unexpectedly; retrying in 1 s", lane.key)
                        await asyncio.sleep(BACKOFF)
                    continue
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
                        async with self._lock:  # never while the queue limits move entries out
                            await lane.queue.page_in(self._store, lane.key)
                        continue
                    async with self._lock:
                        if self.may_send is not None and not self.may_send(lane.key):  # work sharing
                            raise LeaseLost(f"webhook {lane.key}: this replica no longer delivers it (lease "
                                            "expired, lost or handed over)")  # fmt: skip
                        if lane.runnable and len(lane.queue):  # a skip or resume may have changed things
                            await self._deliver(lane.next_batch())
                except LeaseLost as exc:
                    self._lease_lost(exc)
                    return
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

    # -- fallback (issue 14) ------------------------------------------------------------------------------------

    def _fallback_due(self) -> str | None:
        return self._fallback.fallback_for(self.lane) if self._fallback is not None and not self.lane.runnable else None

    async def _hand_over(self, to: str) -> bool:
        """Move the held batch and everything queued behind it to ``to`` in one store commit (logged in both
        delivery logs), and mark the fallback active. Under the lane lock, after the last completion committed.
        Returns whether anything changed (the fallback began, or entries moved)."""
        lane = self.lane
        await self._completion.confirm()
        activated = lane.fallback is None
        retry = dataclasses.replace(lane.retry, held_qids=(), fallback=to)
        line, to_line = self._hand_over_lines(to)
        entries = await self._store.hand_over(lane.key, to, lane.retry.held_qids, line, to_line, retry)
        lane.handed_over(retry, entries, max((e.qid for e in entries), default=0))
        return self._handed_over(to, entries, activated)

    def _hand_over_lines(self, to: str) -> tuple[AttemptRecord, AttemptRecord]:
        """The hand-over's line in this webhook's delivery log and in the fallback's."""
        lane, now = self.lane, self._clock()
        line = record(lane.key, AttemptOutcome.SKIPPED, attempt=lane.retry.attempts, started_at=now,
                      note=f"handed to fallback {to}")  # fmt: skip
        to_line = record(to, AttemptOutcome.REDELIVERY_QUEUED, started_at=now,
                         note=f"handed over by {lane.key} (this webhook is its fallback)")  # fmt: skip
        return line, to_line

    def _handed_over(self, to: str, entries: list[QueuedEvent], activated: bool) -> bool:
        """After the hand-over committed: the fallback's lane takes the entries, status hears of it."""
        assert self._fallback is not None
        self._fallback.handed_over(self.lane, to, entries, activated)
        self._notify(self.lane)
        if entries:
            log.warning("%s handed %d event(s) to its fallback %s", self.lane.key, len(entries), to)
        return activated or bool(entries)

    # -- operator actions (shielded: a caller that goes away must not leave memory and store apart) ---------

    async def resume(self, who: str) -> bool:
        async with self._lock:
            return await asyncio.shield(self._resume(who))

    async def hand_back(self, note: str) -> bool:
        """End an active fallback (a test delivery succeeded): like resume, only when the fallback is active."""
        async with self._lock:
            return self.lane.fallback is not None and await asyncio.shield(self._resume("", note))

    async def _resume(self, who: str, note: str = "") -> bool:
        lane = self.lane
        if lane.resumed():
            await self._store.save_retry_state(lane.key, lane.retry)
            await self._store.log(record(lane.key, AttemptOutcome.RESUMED, attempt=lane.retry.attempts,
                                         started_at=self._clock(), note=note or f"resumed by {who}"))  # fmt: skip
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
        lane.skipped(held, self._clock())
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
        if self.lane.over_cap:
            self.enforce_cap()

    # -- queue limits (issue 13, finding 4) -------------------------------------------------------------------

    def enforce_cap(self) -> None:
        """Move what is over ``maxQueued`` to the dead letters, in the background; one run at a time (appends
        during a run make it look again), so a flood costs one trim per commit at most."""
        if self._closed:
            return
        if self._limiting is not None:
            self._limit_again = True
            return
        self._limiting = asyncio.create_task(self._enforce_cap(), name=f"limits:{self.lane.key}")

    async def _enforce_cap(self) -> int:
        moved = 0
        try:
            again = True
            while again and not self._closed:
                self._limit_again = False
                moved += await self.dead_letter_overdue(None)
                again = self._limit_again and self.lane.over_cap
        except LeaseLost as exc:
            self._lease_lost(exc)
        except StoreUnavailable as exc:
            log.error("store unavailable while applying the queue limits of %s: %s", self.lane.key, exc)
        except Exception:  # a bug must not kill the lane; the next append or sweep tries again
            log.exception("applying the queue limits of %s failed", self.lane.key)
        finally:
            self._limiting = None
        return moved

    async def dead_letter_overdue(self, received_before: float | None) -> int:
        """Move the oldest entries over the cap, and those accepted before ``received_before``, to the dead
        letters; never the held batch. Under the lane lock (so never beside an attempt, a skip or a page read),
        after the last completion is committed (a delivered batch is not in the queue any more). Returns how
        many moved."""
        async with self._lock:
            return await asyncio.shield(self._dead_letter_overdue(received_before))

    async def _dead_letter_overdue(self, received_before: float | None) -> int:
        lane, limits = self.lane, self.lane.limits
        await self._completion.confirm()
        keep = limits.trim_to() if lane.over_cap else None
        if keep is None and received_before is None:
            return 0
        moved = 0
        while True:
            entries = await self._store.overdue(lane.key, keep=keep, received_before=received_before,
                                                protect=self._protected(), limit=OVERDUE_PAGE)  # fmt: skip
            if not entries:
                break
            too_old = sum(1 for e in entries if received_before is not None and e.received_at < received_before)
            reason = limits.reason(len(entries) - too_old, too_old)
            now = self._clock()
            line = record(lane.key, AttemptOutcome.SKIPPED, delivery=delivery_id(lane.key, entries),
                          event_ids=[e.event_id for e in entries], started_at=now, note=reason)  # fmt: skip
            await self._store.dead_letter(lane.key, [e.qid for e in entries], line)
            lane.dead_lettered(entries, reason, now)
            moved += len(entries)
            log.warning("%s: %s", lane.key, reason)
            if len(entries) < OVERDUE_PAGE:
                break
        if moved:
            self._changed()
        return moved

    async def save_retry_state(self) -> None:
        """Persist the lane's retry state after a change that is not an attempt (a reconfiguration resumed it)."""
        await self._store.save_retry_state(self.lane.key, self.lane.retry)

    def _protected(self) -> tuple[int, ...]:
        """What the queue limits never move: the held batch (a parallel lane adds its batches in flight)."""
        return self.lane.retry.held_qids

    def _changed(self) -> None:
        self._notify(self.lane)
        self.kick()

    #: Work sharing (``sharing.manager``): told the webhook key when a lane write found the lease gone; asked
    #: before every batch whether this replica may still send for the webhook.
    on_lease_lost: Callable[[str], None] | None = None
    may_send: Callable[[str], bool] | None = None

    def _lease_lost(self, exc: LeaseLost) -> None:
        """Another replica owns the webhook now: stop at once (nothing more is sent or written from here)."""
        if not self._closed:
            log.warning("lane %s stops: %s", self.lane.key, exc)
        self._closed = True
        if self.on_lease_lost is not None:
            self.on_lease_lost(self.lane.key)
