"""``StatusWriter``: the delivery engine's ``StateObserver`` that keeps every Webhook's ``status`` current.

The engine reports every state and counter change (``webhook_changed``), possibly thousands per second. Writing
each one would hammer the API server, so the writer only *records* the latest snapshot (cheap, synchronous) and a
background task writes the status later, under the rules of ``status.schedule``: at most one patch per webhook per
``interval`` (state transitions on the leading edge, counter updates on the trailing edge, the latest state always
written eventually), at most ``max_patches_per_second`` patches in total, oldest-due first.

Each write is a JSON merge patch of the complete status (``status.entry`` builds it with ``status.summary``)
through the status subresource, made with the official client in the writer's own small thread pool so the event
loop never blocks. A write is skipped when the status equals what was last written (no perpetual writes). 404
means the Webhook is gone: it is forgotten quietly. Connection errors, 5xx and 429 keep the desired state and retry
with per-webhook backoff (0.5 s → 10 s), so statuses catch up after an API server outage. ``stop`` flushes the
final state of every webhook.

The writer is a facade over four parts, each with one job: ``ledger`` (what is known about each webhook and when
its status is due), ``pump`` (the background task: which due writes start now, within the rate cap and the pool),
``patcher`` (the patch calls in the thread pool, classified, counted, logged) and ``event_queue`` (Events from the
synchronous callbacks, posted by the background task). All methods must be called from the event loop's thread (the
delivery engine's callbacks are).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from webhook_operator.api.outcomes import WebhookSnapshot
from webhook_operator.status.event_queue import EventQueue
from webhook_operator.status.events import EventRecorder
from webhook_operator.status.kube import ClientSource, Kube
from webhook_operator.status.ledger import Ledger
from webhook_operator.status.patcher import PatchClient, Patcher
from webhook_operator.status.pump import Doorbell, Pump
from webhook_operator.status.schedule import Scheduler, TokenBucket
from webhook_operator.status.summary import OperatorConditions


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
        if patcher is None:
            if self._kube is None:
                raise ValueError("StatusWriter needs an api_client (or a patcher)")
            patcher = self._kube.patch_status
        concurrency = max(1, concurrency)
        sched = Scheduler(interval, backoff_initial=backoff_initial, backoff_max=backoff_max)
        doorbell = Doorbell(clock)
        self._events = EventQueue(events, wake=doorbell.ring)
        self._ledger = Ledger(sched, self._events, clock=clock, on_due=doorbell.ring_if_sooner)
        self._client = PatchClient(patcher, threads=concurrency)
        self._pump = Pump(self._ledger, sched, self._client, self._events, doorbell,
                          bucket=TokenBucket(max_patches_per_second, now=clock()), concurrency=concurrency,
                          clock=clock, wall_clock=wall_clock, on_gone=self.forget)  # fmt: skip
        self.stats = self._client.stats

    # -- metrics -----------------------------------------------------------------------------------------------

    @property
    def patches_total(self) -> int:
        return self.stats.patches_total

    @property
    def patches_by_key(self) -> Mapping[str, int]:
        return self.stats.patches_by_key

    # -- what the operator and the engine tell us (recorded now, written later) -----------------------------------

    def webhook_changed(self, snapshot: WebhookSnapshot) -> None:
        """StateObserver: remember the latest state; the write happens later."""
        self._ledger.webhook_changed(snapshot)

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
        self._ledger.set_generation(key, generation, uid=uid, current_status=current_status)

    def set_extra(self, key: str, conditions: OperatorConditions) -> None:
        """Operator-side conditions: a configuration problem and/or warnings (see ``OperatorConditions``)."""
        self._ledger.set_extra(key, conditions)

    def set_history(self, key: str, history: Mapping[str, Any]) -> None:
        """``status.version``, ``updatedAt``, ``updatedBy`` and ``changeDescription`` of the spec now reconciled
        (``api.history``)."""
        self._ledger.set_history(key, history)

    def set_last_test(self, key: str, last_test: Mapping[str, Any]) -> None:
        """``status.lastTest``: the result of the latest test delivery (a transition: written on the leading edge)."""
        self._ledger.set_last_test(key, last_test)

    def set_handled(self, key: str, operation: str, value: str) -> None:
        """``status.handledAnnotations``: an operation annotation's value was acted on (written on the leading
        edge, so a restart soon after does not repeat it)."""
        self._ledger.set_handled(key, operation, value)

    def record_event(self, key: str, type: str, reason: str, message: str) -> None:
        """Ask for an Event explicitly (e.g. ``Warning InlineSecret``); rate limited like the others."""
        self._events.queue(self._ledger.entry(key), type, reason, message)

    def forget(self, key: str) -> None:
        """The Webhook was deleted: drop everything about it, write nothing more."""
        self._ledger.forget(key)
        self._client.forget(key)

    def released(self, key: str) -> None:
        """Work sharing: another replica delivers ``key`` now. Its last engine snapshot is dropped (what the
        resource, the generation and the history say stays): the next owner's state is compared with nothing."""
        self._ledger.released(key)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def share(self, owns: Callable[[str], bool], claim: Callable[[str], Awaitable[bool]]) -> None:
        """Work sharing (issue 15): write a webhook's status and post its Events only while this replica owns it
        (``owns``), and make the status claim (``claim``: the store confirms the lease) before each patch."""
        self._pump.owns = self._events.owns = owns
        self._pump.claim = claim

    async def start(self) -> None:
        self._pump.start()

    def pump(self) -> float | None:
        """One pass of the background task: post queued Events, then start every write that is due by the clock
        (within the rate cap and the pool). Returns the clock time of the next pass it needs on its own, or None
        when only a change or a finishing write can make work. The task calls it in a loop; tests call it directly
        with a fake clock, so debouncing is checked step by step instead of racing the real one."""
        return self._pump.pump()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the background task and write the final state of every webhook (ignoring the spacing, for at most
        ``grace`` seconds). Owned clients are closed; a given ``EventRecorder`` is left to its owner."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self._pump.stop()
        await self._pump.drain(deadline)
        self._events.flush()
        await self._events.settle(deadline)
        self._client.close()
        if self._kube is not None:
            self._kube.close()

    async def flush_now(self, grace: float = 30.0) -> int:
        """Write every pending status now, ignoring spacing and the rate cap, and post queued Events; returns the
        patches made. For tests and for callers that need the status on the resource before going on."""
        before, loop = self.stats.patches_total, asyncio.get_running_loop()
        await self._pump.drain(loop.time() + grace)
        self._events.flush()
        await self._events.settle(loop.time() + grace)
        return self.stats.patches_total - before
