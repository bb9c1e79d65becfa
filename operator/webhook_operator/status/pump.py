"""The status writer's background task: which due statuses to patch now, within the rate cap and the thread pool.

``Scheduler`` says which webhook is due when; this decides what to do about it. A pass (``Pump.pump``) posts the
queued Events, then starts every write that is due by the clock, as long as the token bucket and the pool allow,
and tells the task when to look again. Between passes the task sleeps on a ``Doorbell``, which a change that makes
a write due sooner, a queued Event or a finishing write rings. ``drain`` is the way out: every pending status now,
spacing and cap ignored (but not backoff), for ``stop`` and ``flush_now``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from webhook_operator.status.entry import Write
from webhook_operator.status.event_queue import EventQueue
from webhook_operator.status.ledger import Ledger
from webhook_operator.status.patcher import PatchClient
from webhook_operator.status.schedule import PatchOutcome, Scheduler, TokenBucket
from webhook_operator.store.base import StoreUnavailable

log = logging.getLogger(__name__)


class Doorbell:
    """Wakes the sleeping task when work arrives before it meant to look again on its own."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._rung = asyncio.Event()
        self._until = float("-inf")  # when the sleeping task looks on its own (-inf: it is not asleep)
        self._clock = clock

    def ring(self) -> None:
        self._rung.set()

    def ring_if_sooner(self, due: float) -> None:
        """A write is due at ``due``: only worth a pass if the task would otherwise look later."""
        if due < self._until:
            self._rung.set()

    def clear(self) -> None:
        self._rung.clear()

    async def sleep(self, until: float | None) -> None:
        """Until rung or until clock time ``until`` (None: until rung)."""
        self._until = float("inf") if until is None else until
        try:
            if until is None:
                await self._rung.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._rung.wait(), max(until - self._clock(), 0.001))
        finally:
            self._until = float("-inf")


class Pump:
    """Starts the due writes: at most ``concurrency`` in flight, at most ``bucket``'s rate."""

    def __init__(self, ledger: Ledger, sched: Scheduler, client: PatchClient, events: EventQueue, doorbell: Doorbell,
                 *, bucket: TokenBucket, concurrency: int, clock: Callable[[], float],
                 wall_clock: Callable[[], float], on_gone: Callable[[str], None]) -> None:  # fmt: skip
        self._ledger, self._sched, self._client, self._events = ledger, sched, client, events
        self._doorbell, self._bucket, self._concurrency = doorbell, bucket, concurrency
        self._clock, self._wall = clock, wall_clock
        self._on_gone = on_gone  # a 404: the webhook was deleted behind our back
        self._inflight: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        #: Work sharing (issue 15): only the webhooks this replica owns are written, each after the status claim.
        self.owns: Callable[[str], bool] | None = None
        self.claim: Callable[[str], Awaitable[bool]] | None = None

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="status-writer")

    async def stop(self) -> None:
        """Stop the task; writes in flight go on (``drain`` waits for them)."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None

    def pump(self) -> float | None:
        """One pass (see the module docstring). Returns the clock time of the next pass it needs on its own, or
        None when only a change or a finishing write can make work."""
        self._events.flush()
        now = self._clock()
        self._dispatch(now)
        delay = self._next_delay(now)
        return None if delay is None else now + delay

    async def _run(self) -> None:
        while True:
            self._doorbell.clear()
            await self._doorbell.sleep(self.pump())

    def _dispatch(self, now: float) -> None:
        while len(self._inflight) < self._concurrency:
            key = self._sched.pop_due(now)
            if key is None:
                return
            write = self._prepare(key, now)
            if write is None:
                continue
            if not self._bucket.try_take(now):
                self._sched.requeue(key)
                return
            self._launch(write)

    def _next_delay(self, now: float) -> float | None:
        if len(self._inflight) >= self._concurrency:
            return None  # a finishing write rings
        due = self._sched.next_due()
        if due is None:
            return None
        delay = due - now if due > now else self._bucket.wait(now)
        return max(delay, 0.001)

    def _prepare(self, key: str, now: float) -> Write | None:
        """The write ``key`` needs, or None when there is nothing to send (accounted as unchanged)."""
        entry = self._ledger.get(key)
        if entry is None or (self.owns is not None and not self.owns(key)):
            self._sched.forget(key)  # another replica writes it (its next change here marks it again)
            return None
        status = entry.desired_status(self._wall())
        if status is None or entry.is_written(status):
            version = self._sched.begin(key)
            if status is not None:
                entry.written_signature = entry.signature()
                self._client.stats.skipped_total += 1
            self._sched.finish(key, now, version, PatchOutcome.UNCHANGED)
            return None
        return Write(entry, 0, status, entry.signature())

    def _launch(self, write: Write) -> None:
        version = self._sched.begin(write.entry.key)
        task = asyncio.create_task(self._write(Write(write.entry, version, write.status, write.signature)))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _write(self, write: Write) -> None:
        entry = write.entry
        outcome = await self._claimed(entry.key)
        if outcome is None:
            outcome = await self._client.send(write)
        if outcome in (PatchOutcome.WRITTEN, PatchOutcome.REJECTED):
            # A rejected body is remembered too, so it is not resent until the status changes.
            entry.mark_written(write.status, write.signature)
        current = self._ledger.get(entry.key) is entry  # not forgotten (and maybe re-added) meanwhile
        if outcome is PatchOutcome.GONE and current:
            self._on_gone(entry.key)
        elif current:
            self._sched.finish(entry.key, self._clock(), write.version, outcome)
        # Leave the in-flight set *before* ringing: done-callbacks run only after the task would have looked, and a
        # task that still sees every slot busy would sleep with work pending.
        task = asyncio.current_task()
        if task is not None:
            self._inflight.discard(task)
        self._doorbell.ring()

    async def _claimed(self, key: str) -> PatchOutcome | None:
        """None when this replica may write ``key``'s status (no work sharing, or the store confirms the lease);
        otherwise how the write ends without a patch: RETRY when the store could not say."""
        if self.claim is None:
            return None
        try:
            held = await self.claim(key)
        except StoreUnavailable:
            return PatchOutcome.RETRY
        # Still ours by this replica's own clock after the claim's round trip: a process frozen between the two
        # (SIGSTOP past its lease) would otherwise send a status built before the freeze.
        if held and (self.owns is None or self.owns(key)):
            return None
        self._sched.forget(key)  # not ours (any more): the owner writes it
        return PatchOutcome.UNCHANGED

    async def drain(self, deadline: float) -> None:
        """Write every pending status now (spacing and cap ignored, backoff respected) until done or ``deadline``
        (event loop time)."""
        loop = asyncio.get_running_loop()
        while True:
            now = self._clock()
            for key in self._sched.ready(now):
                if len(self._inflight) >= self._concurrency:
                    break
                write = self._prepare(key, now)
                if write is not None:
                    self._launch(write)
            if not self._sched.pending():
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("status of %d webhooks not written before the deadline", len(self._sched.pending()))
                return
            if self._inflight:
                await asyncio.wait(set(self._inflight), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            else:
                retry = self._sched.next_retry()
                await asyncio.sleep(min(remaining, max(0.01, (retry or now) - now)))
