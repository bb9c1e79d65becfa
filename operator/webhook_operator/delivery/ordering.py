"""Which lane a webhook gets: the seed's one-batch-at-a-time lane (``spec.delivery.ordering: webhook``, the
default) or a parallel one (``entity``, ``none``: ``keyed_worker``), and what orders events with ordering entity.

The dispatcher builds a parallel lane here (``keyed_lane``), and a spec that changes the ordering gets a new lane of
the other kind (``switches``, ``reordered``): held batches are formed afresh then (their events stay queued,
in order) and the retry schedule starts over, as any configuration change restarts it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from webhook_operator.api.delivery_limits import Ordering
from webhook_operator.api.events import ChangeEvent
from webhook_operator.delivery.attempt import AttemptPipeline
from webhook_operator.delivery.keyed_worker import KeyedLaneWorker
from webhook_operator.delivery.lane import Lane
from webhook_operator.delivery.limits import QueueLimits
from webhook_operator.delivery.parsed import ParsedEvents
from webhook_operator.delivery.queue import KeyedQueue
from webhook_operator.delivery.related import FallbackPort
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.delivery.worker import LaneWorker, WorkerStore
from webhook_operator.routing import CompiledFilters
from webhook_operator.store.base import LaneState, LaneStore, QueuedEvent, RetryState


def entity_key(event: ChangeEvent) -> str:
    """What orders an event with ordering entity: its entity's id, else its fully qualified name, else itself."""
    return event.entity_id or event.entity_fully_qualified_name or f"event {event.id}"


def keyer(parsed: ParsedEvents) -> Callable[[QueuedEvent], str]:
    def key_of(entry: QueuedEvent) -> str:
        try:
            return entity_key(parsed.parse(entry))  # a read, not the lane's take
        except (ValueError, RecursionError):  # cannot be decoded: alone, so it is dead-lettered alone
            return f"event {entry.event_id}"

    return key_of


def switches(worker: LaneWorker, target: WebhookTarget) -> bool:
    """Whether ``target`` needs a lane of another kind (its ordering changed)."""
    return worker.lane.target.spec.delivery_ordering is not target.spec.delivery_ordering


def fresh_retry(retry: RetryState) -> RetryState:
    """The retry state a lane of the other kind starts from: nothing held (the events stay queued and are batched
    afresh), the schedule restarted, not paused, no active fallback — what a changed configuration means anyway."""
    return dataclasses.replace(retry, held_qids=(), holds=(), attempts=0, next_attempt_at=None, paused=None,
                               fallback=None)  # fmt: skip


def webhook_lane_state(state: LaneState) -> LaneState:
    """The state a seed lane starts from: a parallel lane's holds (the ordering changed while stopped) start afresh."""
    return dataclasses.replace(state, retry=fresh_retry(state.retry)) if state.retry.holds else state


async def keyed_lane(target: WebhookTarget, filters: CompiledFilters, state: LaneState, *, store: WorkerStore,
                     pipeline: AttemptPipeline, parsed: ParsedEvents, policy: RetryPolicy, limits: QueueLimits,
                     notify: Callable[[Lane], None], fallback: FallbackPort | None,
                     shared: bool = False) -> KeyedLaneWorker:  # fmt: skip
    """A parallel lane (ordering entity or none) read from the store: its holds set aside, its queue head indexed
    by key. ``shared`` (work sharing): every entry is read from the store in qid order, as ``SharedLaneQueue``."""
    if state.retry.held_qids and not state.retry.holds:  # the seed's lane held a batch: batched afresh
        state = dataclasses.replace(state, retry=fresh_retry(state.retry))
    holds = [(h.key, h.qids) for h in state.retry.holds]
    queue = await KeyedQueue.load_keyed(store, target.key, state.pending, keyer(parsed),
                                        per_key=target.spec.delivery_ordering is Ordering.ENTITY, holds=holds,
                                        shared=shared)  # fmt: skip
    lane = Lane(target, filters, state, queue, policy, limits)
    return KeyedLaneWorker(lane, store=store, pipeline=pipeline, parsed=parsed, notify=notify, fallback=fallback)


async def reordered(worker: LaneWorker, store: LaneStore, rebuild: Callable[[], Awaitable[LaneWorker]]) -> LaneWorker:
    """The spec changed the ordering: stop the old lane (what it delivered is recorded first), start the retry state
    afresh in the store, and read the other kind of lane from the store."""
    await worker.close()
    await store.save_retry_state(worker.lane.key, fresh_retry(worker.lane.retry))
    new = await rebuild()
    new.lane.related_warnings = worker.lane.related_warnings
    return new
