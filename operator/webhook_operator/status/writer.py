"""``StatusWriter``: the delivery engine's ``StateObserver`` that keeps every Webhook's ``status`` current.

The engine reports every state and counter change (``webhook_changed``), possibly thousands per second. Writing
each one would hammer the API server, so the writer only *records* the latest snapshot (cheap, synchronous) and a
background task writes the status later, under the rules of ``status.schedule``: at most one patch per webhook per
``interval`` (state transitions on the leading edge, counter updates on the trailing edge, the latest state always
written eventually), at most ``max_patches_per_second`` patches in total, oldest-due first.

Each write is a JSON merge patch of the complete status (``status.summary``) through the status subresource, made
with the official client in the writer's own small thread pool so the event loop never blocks. A write is skipped
when the status equals what was last written (no perpetual writes). 404 means the Webhook is gone: it is forgotten
quietly. Connection errors, 5xx and 429 keep the desired state and retry with per-webhook backoff (0.5 s → 10 s),
so statuses catch up after an API server outage. ``stop`` flushes the final state of every webhook.

All methods must be called from the event loop's thread (the delivery engine's callbacks are).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.status.events import WARNING, EventRecorder, ObjectRef, transition_events
from webhook_operator.status.kube import ClientSource, Kube, classify, describe
from webhook_operator.status.schedule import Outcome, Scheduler, TokenBucket
from webhook_operator.status.summary import (
    NO_CONDITIONS,
    OperatorConditions,
    pruned,
    summarize,
    truncate,
    with_operations,
)

log = logging.getLogger(__name__)

Patcher = Callable[[str, str, dict[str, Any]], None]  # (namespace, name, status) -> None; blocking, raises on error
_Signature = tuple[str | None, str | None, tuple[str, ...], int | None, int]
_MAX_EVENT_BACKLOG = 10_000


@dataclass
class _Entry:
    key: str
    namespace: str
    name: str
    snapshot: WebhookSnapshot | None = None
    generation: int | None = None
    uid: str | None = None
    operator: OperatorConditions = NO_CONDITIONS
    written: dict[str, Any] | None = None  # last status written or observed (pruned: as the API server stores it)
    written_signature: _Signature | None = None
    last_test: dict[str, Any] | None = None  # status.lastTest
    handled: dict[str, str] = field(default_factory=dict)  # status.handledAnnotations
    operations: int = 0  # bumped by every operation result, so it is written at once

    def signature(self) -> _Signature:
        """The parts whose change is a transition worth writing at once (see ``schedule``)."""
        state = self.snapshot.state.value if self.snapshot is not None else None
        op = self.operator
        return (state, op.configuration_error, op.warnings, self.generation, self.operations)


@dataclass(frozen=True)
class _Write:
    entry: _Entry
    version: int
    status: dict[str, Any]
    signature: _Signature


@dataclass
class _Stats:
    patches_total: int = 0  # patch calls made (succeeded or not): the API server's load
    patch_failures_total: int = 0
    skipped_total: int = 0  # writes avoided because nothing changed
    patches_by_key: Counter[str] = field(default_factory=Counter)


class StatusWriter:
    """Debounced, coalesced, rate-capped status writer (see the module docstring)."""

    def __init__(
        self,
        api_client: ClientSource | None = None,
        *,
        interval: float = 2.0,
        max_patches_per_second: float = 50.0,
        events: EventRecorder | None = None,
        concurrency: int = 4,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        patcher: Patcher | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._kube = Kube(api_client) if api_client is not None else None
        if patcher is not None:
            self._patch: Patcher = patcher
        elif self._kube is not None:
            self._patch = self._kube.patch_status
        else:
            raise ValueError("StatusWriter needs an api_client (or a patcher)")
        self._sched = Scheduler(interval, backoff_initial=backoff_initial, backoff_max=backoff_max)
        self._bucket = TokenBucket(max_patches_per_second, now=clock())
        self._events = events
        self._concurrency = max(1, concurrency)
        self._clock = clock
        self._wall = wall_clock
        self._entries: dict[str, _Entry] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._event_backlog: list[tuple[ObjectRef, str, str, str]] = []
        self._event_tasks: set[asyncio.Task[bool]] = set()
        self._executor = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="status-writer")
        self._wake = asyncio.Event()
        self._sleep_until = float("-inf")  # when the runner will look again on its own
        self._runner: asyncio.Task[None] | None = None
        self._api_failing = False
        self.stats = _Stats()

    # -- metrics -----------------------------------------------------------------------------------------------

    @property
    def patches_total(self) -> int:
        return self.stats.patches_total

    @property
    def patches_by_key(self) -> Mapping[str, int]:
        return self.stats.patches_by_key

    # -- what the operator and the engine tell us ---------------------------------------------------------------

    def _entry(self, key: str) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            namespace, _, name = key.partition("/")
            if not namespace or not name:
                raise ValueError(f"webhook key must be 'namespace/name', got {key!r}")
            entry = self._entries[key] = _Entry(key, namespace, name)
        return entry

    def _mark(self, entry: _Entry) -> None:
        urgent = entry.signature() != entry.written_signature
        due = self._sched.mark(entry.key, self._clock(), urgent=urgent)
        if due is not None and due < self._sleep_until:
            self._wake.set()

    def webhook_changed(self, snapshot: WebhookSnapshot) -> None:
        """StateObserver: remember the latest state; the write happens later."""
        entry = self._entry(snapshot.key)
        previous, entry.snapshot = entry.snapshot, snapshot
        moved = previous is None or previous.state is not snapshot.state or previous.reason != snapshot.reason
        if self._events is not None and moved:  # counter-only changes never make Events: skip the detector
            for type_, reason, message in transition_events(previous, snapshot):
                self._queue_event(entry, type_, reason, message)
        self._mark(entry)

    def set_generation(
        self,
        key: str,
        generation: int | None,
        *,
        uid: str | None = None,
        current_status: Mapping[str, Any] | None = None,
    ) -> None:
        """The ``metadata.generation`` the engine now runs (→ ``observedGeneration``), the resource's uid (for
        Events) and, once, the status the resource already has (so a restarted operator keeps transition times
        and does not rewrite an unchanged status)."""
        entry = self._entry(key)
        if uid is not None:
            entry.uid = uid
        if current_status is not None and entry.written is None:
            entry.written = pruned(dict(current_status))
            last_test, handled = current_status.get("lastTest"), current_status.get("handledAnnotations")
            if isinstance(last_test, Mapping) and entry.last_test is None:
                entry.last_test = dict(last_test)
            if isinstance(handled, Mapping):
                entry.handled = {**{k: v for k, v in handled.items() if isinstance(v, str)}, **entry.handled}
        if generation != entry.generation:
            entry.generation = generation
            self._mark(entry)

    def set_extra(self, key: str, conditions: OperatorConditions) -> None:
        """Operator-side conditions: a configuration problem and/or warnings (see ``OperatorConditions``)."""
        entry = self._entry(key)
        if conditions == entry.operator:
            return
        before, entry.operator = entry.operator, conditions
        error = conditions.configuration_error
        if error is not None and error != before.configuration_error:
            self._queue_event(entry, WARNING, Reason.CONFIGURATION_ERROR, error)
        self._mark(entry)

    def set_last_test(self, key: str, last_test: Mapping[str, Any]) -> None:
        """``status.lastTest``: the result of the latest test delivery (a transition: written on the leading edge)."""
        entry = self._entry(key)
        entry.last_test = dict(last_test)
        entry.operations += 1
        self._mark(entry)

    def set_handled(self, key: str, operation: str, value: str) -> None:
        """``status.handledAnnotations``: an operation annotation's value was acted on (written on the leading
        edge, so a restart soon after does not repeat it)."""
        entry = self._entry(key)
        if entry.handled.get(operation) == value:
            return
        entry.handled[operation] = value
        entry.operations += 1
        self._mark(entry)

    def record_event(self, key: str, type: str, reason: str, message: str) -> None:
        """Ask for an Event explicitly (e.g. ``Warning InlineSecret``); rate limited like the others."""
        self._queue_event(self._entry(key), type, reason, message)

    def forget(self, key: str) -> None:
        """The Webhook was deleted: drop everything about it, write nothing more."""
        entry = self._entries.pop(key, None)
        self._sched.forget(key)
        self.stats.patches_by_key.pop(key, None)
        if entry is not None and self._events is not None:
            self._events.forget(ObjectRef(entry.namespace, entry.name))

    def _queue_event(self, entry: _Entry, type_: str, reason: str, message: str) -> None:
        if self._events is None:
            return
        if len(self._event_backlog) >= _MAX_EVENT_BACKLOG:
            log.debug("event backlog full; dropping %s for %s", reason, entry.key)
            return
        ref = ObjectRef(entry.namespace, entry.name, entry.uid)
        self._event_backlog.append((ref, type_, reason, truncate(message)))
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="status-writer")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the background task and write the final state of every webhook (ignoring the spacing, for at most
        ``grace`` seconds). Owned clients are closed; a given ``EventRecorder`` is left to its owner."""
        deadline = asyncio.get_running_loop().time() + grace
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        await self._drain(deadline)
        self._flush_events()
        if self._event_tasks:
            await asyncio.wait(self._event_tasks, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._kube is not None:
            self._kube.close()

    async def flush_now(self, grace: float = 30.0) -> int:
        """Write every pending status now, ignoring spacing and the rate cap, and post queued Events; returns the
        patches made. For tests and for callers that need the status on the resource before going on."""
        before = self.stats.patches_total
        await self._drain(asyncio.get_running_loop().time() + grace)
        self._flush_events()
        if self._event_tasks:
            await asyncio.wait(self._event_tasks, timeout=grace)
        return self.stats.patches_total - before

    # -- the background task -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._flush_events()
            now = self._clock()
            self._dispatch(now)
            delay = self._next_delay(now)
            self._sleep_until = float("inf") if delay is None else now + delay
            try:
                if delay is None:
                    await self._wake.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
            finally:
                self._sleep_until = float("-inf")

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
            return None  # a finishing write wakes us
        due = self._sched.next_due()
        if due is None:
            return None
        delay = due - now if due > now else self._bucket.wait(now)
        return max(delay, 0.001)

    def _prepare(self, key: str, now: float) -> _Write | None:
        """The write ``key`` needs, or None when there is nothing to send (accounted as unchanged)."""
        entry = self._entries.get(key)
        if entry is None:
            self._sched.forget(key)
            return None
        status: dict[str, Any] | None = None
        if entry.snapshot is not None or entry.operator.configuration_error is not None:
            status = summarize(
                entry.snapshot,
                generation=entry.generation,
                now=self._wall(),
                operator=entry.operator,
                previous=entry.written,
            )
            status = with_operations(status, entry.last_test, entry.handled)
        if status is None or pruned(status) == entry.written:
            version = self._sched.begin(key)
            if status is not None:
                entry.written_signature = entry.signature()
                self.stats.skipped_total += 1
            self._sched.finish(key, now, version, Outcome.UNCHANGED)
            return None
        return _Write(entry, 0, status, entry.signature())

    def _launch(self, write: _Write) -> None:
        version = self._sched.begin(write.entry.key)
        task = asyncio.create_task(self._write(_Write(write.entry, version, write.status, write.signature)))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _write(self, write: _Write) -> None:
        entry = write.entry
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._patch, entry.namespace, entry.name, write.status)
            outcome = Outcome.WRITTEN
        except Exception as exc:
            outcome = classify(exc)
            self._log_failure(entry.key, outcome, exc)
        self.stats.patches_total += 1
        if outcome is not Outcome.GONE:
            self.stats.patches_by_key[entry.key] += 1
        if outcome is Outcome.WRITTEN and self._api_failing:
            self._api_failing = False
            log.info("status writes succeed again")
        if outcome in (Outcome.WRITTEN, Outcome.REJECTED):
            # A rejected body is remembered too, so it is not resent until the status changes.
            entry.written, entry.written_signature = pruned(write.status), write.signature
        current = self._entries.get(entry.key) is entry  # not forgotten (and maybe re-added) meanwhile
        if outcome is Outcome.GONE and current:
            self.forget(entry.key)
        elif current:
            self._sched.finish(entry.key, self._clock(), write.version, outcome)
        # Leave the in-flight set *before* waking the runner: done-callbacks run only after the runner would have
        # looked, and a runner that still sees every slot busy would sleep with work pending.
        task = asyncio.current_task()
        if task is not None:
            self._inflight.discard(task)
        self._wake.set()

    def _log_failure(self, key: str, outcome: Outcome, exc: BaseException) -> None:
        if outcome is Outcome.GONE:
            log.debug("webhook %s is gone; forgetting its status", key)
            return
        self.stats.patch_failures_total += 1
        if outcome is Outcome.REJECTED:
            log.error("status of %s rejected by the API server: %s", key, describe(exc))
        elif not self._api_failing:
            self._api_failing = True
            log.warning("status writes failing (%s: %s); retrying with backoff", key, describe(exc))
        else:
            log.debug("status write of %s failed again: %s", key, describe(exc))

    async def _drain(self, deadline: float) -> None:
        """Write every pending status now (spacing and cap ignored, backoff respected) until done or deadline."""
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

    def _flush_events(self) -> None:
        if self._events is None or not self._event_backlog:
            return
        backlog, self._event_backlog = self._event_backlog, []
        for ref, type_, reason, message in backlog:
            task = asyncio.create_task(self._events.record(ref, type_, reason, message))
            self._event_tasks.add(task)
            task.add_done_callback(self._event_tasks.discard)
