"""One webhook's lane: its target, filters, in-memory queue head, retry state and counters.

Order is the point: a lane sends one batch at a time, and while a batch waits for a retry every later event waits
behind it. The lane owns its state: only its own methods change it, the retry state only through
``retry.next_state``, so the worker, the operations and the status snapshot can never disagree about what a state
means.
"""

from __future__ import annotations

import dataclasses

from webhook_operator.api.delivery_limits import Ordering
from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.api.related import TriggerOn
from webhook_operator.api.webhook import WebhookState
from webhook_operator.delivery.attempt import Attempt
from webhook_operator.delivery.limits import QueueLimits
from webhook_operator.delivery.queue import LaneQueue
from webhook_operator.delivery.related import delivery_state, transition
from webhook_operator.delivery.retry import (
    PAUSED_FAILED,
    PAUSED_LIMIT,
    Attempted,
    Resumed,
    RetryPolicy,
    Skipped,
    drop_hold,
    next_hold_state,
    next_state,
    shrink_hold,
)
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.routing import CompiledFilters
from webhook_operator.store.base import LaneState, QueuedEvent, RetryState


class Lane:
    def __init__(self, target: WebhookTarget, filters: CompiledFilters, state: LaneState, queue: LaneQueue,
                 policy: RetryPolicy, limits: QueueLimits | None = None) -> None:  # fmt: skip
        self._target = target
        self._policy = policy
        self._filters = filters
        self._retry = state.retry
        self._counters = dataclasses.replace(state.counters)
        self.queue = queue
        self._operator_limits = limits or QueueLimits(None, None)
        self.limits = self._operator_limits.for_spec(target.spec)
        self._cap = self.limits.max_queued  # read on every append: kept flat
        self._dead_letters, self._dead_since = state.dead_letters, state.dead_lettered_since
        self._dead_reason: str | None = None
        self._overflowed = 0
        self._reported = delivery_state(self._retry)  # the delivery state triggers last heard of
        #: Warnings about spec.fallback/spec.triggers (a refused cycle), set by the dispatcher.
        self.related_warnings: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self._target.key

    @property
    def target(self) -> WebhookTarget:
        return self._target

    @property
    def filters(self) -> CompiledFilters:
        return self._filters

    @property
    def retry(self) -> RetryState:
        return self._retry

    @property
    def accepting(self) -> bool:
        """Disabled webhooks queue nothing; everything else queues, even while paused, so nothing is lost."""
        return self._target.spec.enabled

    @property
    def runnable(self) -> bool:
        """Whether the worker may send at all (pause, configuration error and disable stop it)."""
        return self._retry.paused is None and not self._target.config_error and self._target.spec.enabled

    def reconfigure(self, target: WebhookTarget, filters: CompiledFilters) -> bool:
        """A new registration. A changed delivery configuration resumes a paused or retrying lane at once; returns
        True when that changed the retry state (the caller persists it)."""
        changed = self._target.delivery_shape() != target.delivery_shape()
        self._target, self._filters = target, filters
        self.limits = self._operator_limits.for_spec(target.spec)
        self._cap = self.limits.max_queued
        if changed and (self._retry.paused is not None or self._retry.held_qids):
            self._retry = next_state(self._retry, Resumed(), self._policy, 0.0)
            return True
        return False

    def next_batch(self) -> list[QueuedEvent]:
        """The held batch (frozen: a retry resends exactly it), else up to ``batchSize`` from the head."""
        if self._retry.held_qids:
            held = self.queue.find(self._retry.held_qids)
            if held is not None:
                size = self._target.spec.delivery_batch_size
                if len(held) > size:  # batchSize lowered (or a one-event shape chosen) while a batch was held
                    held = held[:size]
                    self._retry = dataclasses.replace(self._retry, held_qids=tuple(e.qid for e in held))
                return held
            # Partly gone from memory (only if the store changed underneath): a fresh batch rather than a wedge.
            self._retry = dataclasses.replace(self._retry, held_qids=())
        return self.queue.head(self._target.spec.delivery_batch_size)

    def held(self) -> list[QueuedEvent] | None:
        """The held batch if all of it is in memory; None when nothing is held."""
        return self.queue.find(self._retry.held_qids) if self._retry.held_qids else None

    def attempted(self, batch: list[QueuedEvent], attempt: Attempt, now: float) -> None:
        """Fold one attempt into the lane: dequeue and count a delivery, or hold and count a failure."""
        outcome = attempt.outcome
        self._retry = next_state(self._retry, Attempted([e.qid for e in batch], outcome), self._policy, now)
        self._count(batch, attempt)

    def _count(self, batch: list[QueuedEvent], attempt: Attempt) -> None:
        """A delivered batch leaves the queue and counts its events; a failure counts one failed attempt."""
        outcome = attempt.outcome
        if outcome.ok:
            self.queue.remove(batch)
            self._counters.delivered += len(batch)
            self._counters.last_success_at = attempt.record.started_at + outcome.duration_ms / 1000
        else:
            self._counters.failed += 1

    def resumed(self) -> bool:
        """Leave retryLimitReached/failed or cut a wait short. False when nothing was held or paused."""
        if self._retry.paused is None and not self._retry.held_qids:
            return False
        self._retry = next_state(self._retry, Resumed(), self._policy, 0.0)
        return True

    # -- parallel delivery (ordering entity or none; the worker is ``keyed_worker.KeyedLaneWorker``) ------------

    def attempted_key(self, hold_key: str, batch: list[QueuedEvent], attempt: Attempt, now: float) -> None:
        """Fold one attempt of ``hold_key``'s batch: dequeue and count a delivery, or hold it and count a failure."""
        outcome = attempt.outcome
        self._retry = next_hold_state(self._retry, hold_key, [e.qid for e in batch], outcome, self._policy, now)
        self._count(batch, attempt)

    def hold_dropped(self, hold_key: str) -> None:
        self._retry = drop_hold(self._retry, hold_key)

    def hold_shrunk(self, hold_key: str, qids: list[int]) -> None:
        self._retry = shrink_hold(self._retry, hold_key, qids)

    def holds_skipped(self, hold_keys: list[str], entries: list[QueuedEvent], now: float) -> None:
        """These holds' batches went to the dead letters; with none left the webhook runs again, as after a skip."""
        self.queue.remove(entries)
        for key in hold_keys:
            self._retry = drop_hold(self._retry, key)
        if not self._retry.holds:
            self._retry = next_state(self._retry, Skipped(), self._policy, 0.0)
        self._count_dead_letters(len(entries), now)

    def undecodable(self, entry: QueuedEvent, now: float) -> None:
        """An event that cannot be decoded went to the dead letters (retry state untouched: other keys are held)."""
        self.queue.remove([entry])
        self._count_dead_letters(1, now)

    # -- related webhooks (issue 14) ---------------------------------------------------------------------------

    @property
    def fallback(self) -> str | None:
        """The webhook this one's events go to now (its fallback is active), else None."""
        return self._retry.fallback

    def handed_over(self, retry: RetryState, entries: list[QueuedEvent], up_to_qid: int) -> None:
        """The store moved every queued entry to the fallback and saved ``retry`` (fallback set, nothing held)."""
        self._retry = retry
        self.queue.moved_out(up_to_qid, len(entries))

    def transition(self) -> TriggerOn | None:
        """The trigger transition since the last call, if the delivery state changed meaningfully."""
        before, self._reported = self._reported, delivery_state(self._retry)
        return transition(before, self._reported)

    def skipped(self, batch: list[QueuedEvent], now: float) -> None:
        self.queue.remove(batch)
        self._retry = next_state(self._retry, Skipped(), self._policy, 0.0)
        self._count_dead_letters(len(batch), now)

    # -- queue limits ----------------------------------------------------------------------------------------

    @property
    def over_cap(self) -> bool:
        """More queued than ``maxQueued`` (checked on every append: one comparison)."""
        cap = self._cap
        return cap is not None and self.queue.total > cap

    def dead_lettered(self, entries: list[QueuedEvent], reason: str, now: float) -> None:
        """The queue limits moved ``entries`` (never the held batch) to the dead letters."""
        self.queue.remove(entries)
        self._overflowed += len(entries)
        self._dead_reason = reason
        self._count_dead_letters(len(entries), now)

    def dead_letters_kept(self, count: int, since: float | None) -> None:
        """The store's count after retention removed some."""
        self._dead_letters, self._dead_since = count, since

    def _count_dead_letters(self, count: int, now: float) -> None:
        self._dead_letters += count
        if self._dead_since is None:
            self._dead_since = now

    # -- status -------------------------------------------------------------------------------------------

    def state(self) -> tuple[WebhookState, str, str]:
        retry = self._retry
        if not self._target.spec.enabled:
            return WebhookState.DISABLED, Reason.DISABLED, "webhook is disabled (spec.enabled is false)"
        if self._target.config_error:
            return WebhookState.FAILED, Reason.CONFIGURATION_ERROR, self._target.config_error
        fallback = (f"; its events go to fallback {retry.fallback} until it is resumed or a test delivery "
                    "succeeds" if retry.fallback else "")  # fmt: skip
        if retry.paused == PAUSED_FAILED:
            return WebhookState.FAILED, Reason.CONFIGURATION_ERROR, (retry.last_reason or "") + fallback
        if retry.paused == PAUSED_LIMIT:
            held = fallback or f"; {self.queue.total} events held; fix the endpoint or resume/skip"
            return (
                WebhookState.RETRY_LIMIT_REACHED,
                Reason.RETRY_LIMIT_REACHED,
                f"delivery paused after {retry.attempts} failed attempts ({retry.last_reason}){held}",
            )
        if retry.holds:
            return WebhookState.AWAITING_RETRY, Reason.DELIVERY_FAILING, self._holds_message()
        if retry.held_qids:
            return WebhookState.AWAITING_RETRY, Reason.DELIVERY_FAILING, (
                f"attempt {retry.attempts} failed: {retry.last_reason}"
            )  # fmt: skip
        reason = Reason.DELIVERING if self._counters.delivered else Reason.IDLE
        return WebhookState.ACTIVE, reason, f"{self._counters.delivered} events delivered"

    def _holds_message(self) -> str:
        """Ordering entity/none with batches held: how many, the latest failure, and that the rest still flows."""
        retry = self._retry
        latest = max(retry.holds, key=lambda h: h.last_failed_at or 0.0)
        what = "entities" if self._target.spec.delivery_ordering is Ordering.ENTITY else "batches"
        return (f"{len(retry.holds)} {what} held for a retry ({len(retry.held_qids)} events), the others deliver; "
                f"latest: attempt {latest.attempts} for {latest.key[:128]} failed: {retry.last_reason}")  # fmt: skip

    def snapshot(self) -> WebhookSnapshot:
        state, reason, message = self.state()
        retry, counters = self._retry, self._counters
        return WebhookSnapshot(
            key=self.key, state=state, reason=reason, message=message,
            delivered=counters.delivered, failed=counters.failed, pending=self.queue.total,
            last_successful_at=counters.last_success_at, last_failed_at=retry.last_failed_at,
            last_failed_status_code=retry.last_status_code, last_failed_reason=retry.last_reason,
            next_attempt_at=retry.next_attempt_at if retry.held_qids and not retry.paused else None,
            oldest_pending_at=self.queue.oldest_received_at,
            dead_letters=self._dead_letters, dead_lettered_since=self._dead_since,
            dead_letter_reason=self._dead_reason, overflowed=self._overflowed,
            fallback_configured=self._target.spec.fallback is not None, fallback_to=retry.fallback,
            warnings=self.related_warnings,
        )  # fmt: skip
