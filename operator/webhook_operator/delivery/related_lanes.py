"""The dispatcher's related-webhooks half (issue 14; the rules are in ``delivery.related``): fallbacks taken and
ended, webhooks waiting for a fallback woken, trigger events enqueued on a delivery-state transition.

A mixin of ``dispatcher.Dispatcher`` (which sets the attributes declared here), split from it so that each file
holds one concern: the lane table and routing there, what one webhook's state means to the others here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from webhook_operator.api.encoding import compact_json
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.related import TriggerOn
from webhook_operator.delivery.lane import Lane
from webhook_operator.delivery.related import RelatedGraph, trigger_event
from webhook_operator.delivery.shared_lanes import SharedLanes
from webhook_operator.store.base import QueuedEvent, RoutedEvent, StoreUnavailable
from webhook_operator.store.unrouted import Routing

log = logging.getLogger("webhook_operator.delivery.dispatcher")  # its records keep the name they had there


def encode_event(event: ChangeEvent) -> bytes:
    return compact_json(event.wire())


class EventSink(Protocol):
    """Where the engine posts Kubernetes Events of its own (fallback taken over or ended, a refused cycle)."""

    def record_event(self, key: str, type: str, reason: str, message: str) -> None: ...


class NoEvents:
    def record_event(self, key: str, type: str, reason: str, message: str) -> None:
        return None


class RelatedLanes(SharedLanes):
    """Fallback and trigger handling of the dispatcher (see the module docstring)."""

    _related: RelatedGraph
    _events: EventSink
    _emitting: set[asyncio.Task[None]]

    async def _enqueue_and_route(self, events: Sequence[ChangeEvent], routed: list[RoutedEvent],
                                 routing: Routing = Routing.GIVEN) -> object:  # fmt: skip
        raise NotImplementedError

    def _destination(self, lane: Lane) -> str:
        fallback = lane.fallback
        usable = fallback is not None and fallback in self._workers and self._related.fallback(lane.key) == fallback
        return fallback if usable and fallback is not None else lane.key

    def fallback_for(self, lane: Lane) -> str | None:
        """FallbackPort: where a stalled lane's queue goes now. An active fallback takes whatever is queued while
        it is registered; a new one only if it can deliver (enabled, no configuration error, not stalled itself
        unless its own fallback is active: chains are allowed, cycles are refused)."""
        retry, target = lane.retry, lane.target
        if retry.paused is None or not target.spec.enabled or target.config_error:
            return None
        if retry.fallback is not None:
            still = retry.fallback in self._workers and self._related.fallback(lane.key) == retry.fallback
            return retry.fallback if lane.queue.total and still else None
        to = self._related.fallback(lane.key)
        worker = self._workers.get(to) if to is not None else None
        if worker is None:
            return None  # absent: the events stay here until it appears (``_kick_sources``)
        other = worker.lane
        delivering = other.retry.paused is None or other.fallback is not None
        usable = other.accepting and not other.target.config_error and delivering
        return to if usable else None

    def handed_over(self, lane: Lane, to: str, entries: list[QueuedEvent], activated: bool) -> None:
        """FallbackPort: the entries are committed to ``to``: into its lane, and say so when the fallback began."""
        worker = self._workers.get(to)
        if worker is not None and entries and self.owns(to):
            worker.append(entries)
        if activated:
            state = lane.snapshot().state.value
            self._events.record_event(lane.key, "Warning", "FallbackActivated",
                                      f"{lane.key} is {state}: its held batch and queued events ({len(entries)}) and "
                                      f"new events go to its fallback {to} until it is resumed or a test delivery "
                                      "succeeds")  # fmt: skip
            taking = f"taking over the events of {lane.key} ({len(entries)} queued), which is {state}"
            self._events.record_event(to, "Normal", "FallbackTakingOver", taking)

    def _fallback_ended(self, key: str, fallback: str, why: str) -> None:
        self._events.record_event(key, "Normal", "FallbackEnded",
                                  f"{key} delivers to its own endpoint again ({why}); events already handed to "
                                  f"{fallback} stay there")  # fmt: skip

    async def _end_refused_fallbacks(self, keys: set[str]) -> None:
        """A fallback that is no longer accepted (acceptFrom withdrawn) or now closes a cycle ends: its source
        delivers to its own endpoint again, as on resume; events already handed over stay with the fallback."""
        for key in keys:
            worker = self._workers.get(key)
            ended = worker.lane.fallback if worker is not None else None
            if worker is None or ended is None or self._related.fallback(key) == ended or ended not in self._workers:
                continue
            if await worker.hand_back(f"fallback {ended} no longer usable"):
                self._fallback_ended(key, ended, f"{ended} no longer takes its events: see its status")

    def _kick_sources(self, key: str) -> None:
        """``key`` appeared or changed state: stalled webhooks waiting for it as their fallback look again."""
        for source in self._related.sources(key):
            worker = self._workers.get(source)
            if worker is not None and not worker.lane.runnable and not self._stopping:
                worker.kick()

    def _related_warnings(self, keys: set[str], registering: str | None) -> None:
        for key in keys:
            worker = self._workers.get(key)
            if worker is None:
                continue
            warnings = self._related.warnings(key)
            if warnings != worker.lane.related_warnings:
                worker.lane.related_warnings = warnings
                if warnings:
                    reason = self._related.event_reason(key)
                    self._events.record_event(key, "Warning", reason, "; ".join(warnings))
                if key != registering:
                    self._notify(worker.lane)

    def _transitioned(self, lane: Lane, kind: TriggerOn) -> None:
        """A delivery-state transition: wake webhooks waiting for this one as a fallback, and enqueue one trigger
        event for the webhooks it triggers (durably, in the background: ``_notify`` is synchronous)."""
        self._kick_sources(lane.key)
        targets = [t for t in self._related.triggers(lane.key, kind) if t in self._workers]
        if not targets or self._stopping:
            return
        snapshot = lane.snapshot()
        event = trigger_event(lane.target, kind, lane.retry, state=snapshot.state, delivered=snapshot.delivered,
                              failed=snapshot.failed, pending=snapshot.pending, now=self._pipeline.clock())  # fmt: skip
        task = asyncio.ensure_future(self._emit(event, targets))
        self._emitting.add(task)
        task.add_done_callback(self._emitting.discard)

    async def _emit(self, event: ChangeEvent, targets: list[str]) -> None:
        """Trigger events bypass the targets' filters (they are this webhook's own, not metadata changes)."""
        try:
            await self._enqueue_and_route([event], [RoutedEvent(event.id, encode_event(event), targets)])
        except StoreUnavailable as exc:
            log.error("trigger event %s for %s not enqueued: store unavailable: %s", event.event_type, targets, exc)
