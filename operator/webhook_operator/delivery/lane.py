"""One webhook's lane: its in-memory FIFO, retry state and worker task.

Order is the point: a lane sends one batch at a time, and while a batch waits for a retry every later event waits
behind it. The store holds the durable truth; the lane mirrors the queue head in memory so the hot path never reads
the database, and pages a long backlog in from the store instead of holding it all in memory.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.api.webhook import WebhookState
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.routing import CompiledFilters
from webhook_operator.store.base import Counters, QueuedEvent, RetryState

PAGE = 1000
_DELIVERY_NS = uuid.UUID("5b0f4f36-8a43-4a4e-9b8e-6e2b0d1c7a11")

PAUSED_LIMIT = WebhookState.RETRY_LIMIT_REACHED.value
PAUSED_FAILED = WebhookState.FAILED.value


@dataclass
class Lane:
    target: WebhookTarget
    filters: CompiledFilters
    retry: RetryState
    counters: Counters
    queue: deque[QueuedEvent]
    #: True while older entries than the in-memory tail are still only on disk (a paged backlog).
    more_on_disk: bool = False
    disk_dirty: bool = False
    last_qid: int = 0
    pending_total: int = 0
    wake: asyncio.Event | None = None
    task: asyncio.Task[None] | None = None
    #: The last completion write, not yet confirmed, and its arguments to write it again (Dispatcher._confirm).
    commit: tuple[asyncio.Future[None], tuple[list[int], Any]] | None = None
    #: Held by an attempt (send + record) and by skip/resume, so an operator action never races a request.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_error: str | None = None

    @property
    def key(self) -> str:
        return self.target.key

    @property
    def accepting(self) -> bool:
        """Disabled webhooks queue nothing; everything else queues, even while paused, so nothing is lost."""
        return self.target.spec.enabled

    def append(self, entries: list[QueuedEvent]) -> None:
        """Newly committed entries. ``pending_total`` counts them all; the queue takes those not already paged in
        (a page read can see a commit before the submitter that made it resumes)."""
        self.pending_total += len(entries)
        if self.more_on_disk:
            self.disk_dirty = True
            return  # they will be paged in behind the older backlog, in order
        fresh = [e for e in entries if e.qid > self.last_qid]
        if fresh:
            self.queue.extend(fresh)
            self.last_qid = fresh[-1].qid

    def next_batch(self) -> list[QueuedEvent]:
        if self.retry.held_qids:
            held = set(self.retry.held_qids)
            batch = [e for e in self.queue if e.qid in held]
            if len(batch) == len(held):
                return batch
            # The held batch was partly lost from memory (cannot happen unless the store changed underneath);
            # fall back to a fresh batch rather than wedge the lane.
            self.retry.held_qids = []
        size = self.target.spec.batch_size
        return [self.queue[i] for i in range(min(size, len(self.queue)))]

    def pop(self, batch: list[QueuedEvent]) -> None:
        done = {e.qid for e in batch}
        popped = 0
        while self.queue and self.queue[0].qid in done:
            self.queue.popleft()
            popped += 1
        if popped < len(done):  # batch not at the head (never expected): remove the rest wherever they are
            self.queue = deque(e for e in self.queue if e.qid not in done)
        self.pending_total = max(0, self.pending_total - len(batch))

    def waiting_for(self, now: float) -> float | None:
        """Seconds until the held batch may be retried; None if it may go now."""
        at = self.retry.next_attempt_at
        return None if at is None or at <= now else at - now

    @staticmethod
    def delivery_id(key: str, batch: list[QueuedEvent]) -> str:
        """Stable across every attempt of the same batch, so receivers can deduplicate retries."""
        return str(uuid.uuid5(_DELIVERY_NS, f"{key}|{batch[0].qid}|{batch[-1].qid}|{len(batch)}"))

    # -- status -------------------------------------------------------------------------------------------

    def state(self) -> tuple[WebhookState, str, str]:
        if not self.target.spec.enabled:
            return WebhookState.DISABLED, Reason.DISABLED, "webhook is disabled (spec.enabled is false)"
        if self.target.config_error:
            return WebhookState.FAILED, Reason.CONFIGURATION_ERROR, self.target.config_error
        if self.retry.paused == PAUSED_FAILED:
            return WebhookState.FAILED, Reason.CONFIGURATION_ERROR, self.last_error or self.retry.last_reason or ""
        if self.retry.paused == PAUSED_LIMIT:
            return (
                WebhookState.RETRY_LIMIT_REACHED,
                Reason.RETRY_LIMIT_REACHED,
                f"delivery paused after {self.retry.attempts} failed attempts ({self.retry.last_reason}); "
                f"{self.pending_total} events held; fix the endpoint or resume/skip",
            )
        if self.retry.held_qids:
            return (
                WebhookState.AWAITING_RETRY,
                Reason.DELIVERY_FAILING,
                f"attempt {self.retry.attempts} failed: {self.retry.last_reason}",
            )
        reason = Reason.DELIVERING if self.counters.delivered else Reason.IDLE
        return WebhookState.ACTIVE, reason, f"{self.counters.delivered} events delivered"

    def snapshot(self) -> WebhookSnapshot:
        state, reason, message = self.state()
        return WebhookSnapshot(
            key=self.key, state=state, reason=reason, message=message,
            delivered=self.counters.delivered, failed=self.counters.failed, pending=self.pending_total,
            last_successful_at=self.counters.last_success_at, last_failed_at=self.retry.last_failed_at,
            last_failed_status_code=self.retry.last_status_code, last_failed_reason=self.retry.last_reason,
            next_attempt_at=self.retry.next_attempt_at if self.retry.held_qids and not self.retry.paused else None,
            oldest_pending_at=self.queue[0].received_at if self.queue else None,
        )  # fmt: skip

    def resume(self) -> bool:
        """Leave retryLimitReached/failed: the held batch goes first, now. True if the lane was paused."""
        was_paused = self.retry.paused is not None
        self.retry.paused = None
        self.retry.attempts = 0
        self.retry.next_attempt_at = None
        return was_paused


def now() -> float:
    return time.time()


Clock = Callable[[], float]
