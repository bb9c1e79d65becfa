"""The durable store behind one protocol: accepted events, per-webhook queues, attempts, dead letters.

The protocol is shaped for more than one backend. SQLite (the embedded default) serves one operator process; a
PostgreSQL backend shared by several replicas can implement the same calls, claiming a webhook's queue with a lease
(``claim``/``release``) instead of relying on process-local locks, so that exactly one replica delivers a given
webhook's events in order.

Every write that acknowledges something to a caller (``enqueue`` to the intake, ``complete`` to the dispatcher)
returns only after it is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class StoreUnavailable(RuntimeError):
    """The store cannot take writes (disk full, database gone). The intake answers 503; nothing is half-done."""


@dataclass(frozen=True)
class RoutedEvent:
    """An accepted event and the webhooks (``namespace/name`` keys) it must be delivered to."""

    event_id: str
    body: bytes
    webhooks: Sequence[str]


@dataclass(frozen=True)
class QueuedEvent:
    """One queue entry. ``qid`` orders a webhook's queue (a redelivered old event queues behind newer ones);
    ``seq`` identifies the stored event."""

    qid: int
    seq: int
    event_id: str
    body: bytes
    received_at: float = 0.0  # when the event was accepted (for the oldest-pending-age metric)


@dataclass(frozen=True)
class EnqueueResult:
    #: Store sequence number per input event, or None for a duplicate id (already accepted earlier).
    seqs: list[int | None]
    #: The new queue entries per webhook, in queue order, so a dispatcher can deliver without reading them back.
    queued: dict[str, list[QueuedEvent]] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return sum(1 for s in self.seqs if s is not None)

    @property
    def duplicates(self) -> int:
        return sum(1 for s in self.seqs if s is None)


class AttemptOutcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"
    RESUMED = "resumed"
    REDELIVERY_QUEUED = "redeliveryQueued"
    TEST = "test"


@dataclass(frozen=True)
class AttemptRecord:
    """One line of the delivery log. Secrets are masked before a record is built."""

    webhook: str
    delivery_id: str
    event_ids: Sequence[str]
    attempt: int
    started_at: float
    duration_ms: float
    outcome: AttemptOutcome
    status_code: int | None = None
    error: str | None = None
    response_body: str = ""
    note: str = ""
    id: int | None = None


@dataclass
class RetryState:
    """The batch a webhook is holding and when it is tried again; persisted so a restart resumes it exactly."""

    held_qids: list[int] = field(default_factory=list)
    attempts: int = 0
    next_attempt_at: float | None = None
    paused: str | None = None  # None, "retryLimitReached" or "failed"
    last_failed_at: float | None = None
    last_status_code: int | None = None
    last_reason: str | None = None


@dataclass
class Counters:
    delivered: int = 0
    failed: int = 0
    last_success_at: float | None = None


@dataclass(frozen=True)
class AttemptQuery:
    outcome: AttemptOutcome | None = None
    since: float | None = None
    until: float | None = None
    after_id: int | None = None  # cursor: the last id of the previous page
    limit: int = 100


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def enqueue(self, events: Sequence[RoutedEvent]) -> EnqueueResult:
        """Durably accept events and queue them per webhook. Duplicate event ids are accepted once."""
        ...

    async def pending(self, webhook: str, after_qid: int = 0, limit: int = 1000) -> list[QueuedEvent]:
        """Queued events of one webhook in order (used at start-up and to page a long backlog into memory)."""
        ...

    async def pending_count(self, webhook: str) -> int: ...

    async def webhooks_with_pending(self) -> list[str]: ...

    async def webhook_keys(self) -> list[str]:
        """Every webhook the store holds anything for (queue, counters, retry state)."""
        ...

    async def complete(self, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
        """The batch was delivered: dequeue it, log the attempt, count it, clear retry state — one commit."""
        ...

    async def fail(self, webhook: str, record: AttemptRecord, retry: RetryState) -> None:
        """A batch failed: log the attempt, count it and persist the retry state — one commit."""
        ...

    async def skip(self, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
        """Dequeue a held batch into the dead letters, recorded in the log (never silently)."""
        ...

    async def requeue(self, webhook: str, event_ids: Sequence[str], record: AttemptRecord) -> list[QueuedEvent]:
        """Queue stored events again for a webhook (redelivery), in the given order, behind everything already
        queued, and log ``record`` — one commit. Returns the new queue entries (ids the store does not hold are
        left out) so the dispatcher can deliver them without reading them back."""
        ...

    async def log(self, record: AttemptRecord) -> None: ...

    async def retry_state(self, webhook: str) -> RetryState: ...

    async def save_retry_state(self, webhook: str, retry: RetryState) -> None: ...

    async def counters(self, webhook: str) -> Counters: ...

    async def attempts(self, webhook: str, query: AttemptQuery) -> list[AttemptRecord]: ...

    async def events_between(self, since: float | None, until: float | None, limit: int) -> list[QueuedEvent]:
        """Accepted events by arrival time, for redelivery of a time range."""
        ...

    async def events_by_id(self, event_ids: Sequence[str]) -> list[QueuedEvent]: ...

    async def delivered_events(
        self, webhook: str, since: float | None, until: float | None, limit: int
    ) -> list[QueuedEvent]:
        """Events accepted in ``[since, until)`` that the delivery log shows as delivered to (or skipped by)
        ``webhook``, in acceptance order: what "redeliver this webhook's events of that hour" means."""
        ...

    async def purge(self, webhook: str) -> None:
        """Forget a deleted webhook: its queue, retry state, counters (the delivery log ages out by retention)."""
        ...

    async def prune(self, older_than: float) -> int:
        """Drop delivered events and log lines older than the retention horizon; queued events are never dropped."""
        ...

    async def claim(self, webhook: str, owner: str, ttl: float) -> bool:
        """Lease a webhook's queue to one delivering process; True if this owner holds it now."""
        ...

    async def release(self, webhook: str, owner: str) -> None: ...
