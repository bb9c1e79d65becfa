"""The durable store behind one protocol: accepted events, per-webhook queues, attempts, dead letters.

The protocol holds only what production calls, split by the role that calls it: the intake enqueues
(``IntakeStore``), a delivery lane works its webhook's queue (``LaneStore``), the API and redelivery read the log
(``LogStore``), and the service opens, prunes and purges (``MaintenanceStore``). A narrow protocol is what lets more
than one backend implement it faithfully: SQLite (the embedded default), an in-memory store for unit tests, and
later PostgreSQL; one contract test suite (``tests/unit/store/test_contract.py``) runs against each of them.

Every write that acknowledges something to a caller (``enqueue`` to the intake, ``complete`` to a lane) returns
only after it is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from webhook_operator.store.lease_protocol import Fence as Fence
from webhook_operator.store.lease_protocol import Lease as Lease
from webhook_operator.store.lease_protocol import LeaseLost as LeaseLost
from webhook_operator.store.lease_protocol import LeaseStore as LeaseStore
from webhook_operator.store.lease_protocol import Replica as Replica
from webhook_operator.store.unrouted import Routing, UnroutedStore


class StoreUnavailable(RuntimeError):
    """The store cannot take writes (disk full, database gone). The intake answers 503; nothing is half-done."""


@dataclass(frozen=True)
class StoreUsage:
    """How much of its space budget the store uses. ``used_bytes`` is live data (SQLite: pages in use, not the
    free pages a prune left behind, which new writes reuse); ``budget_bytes`` None means no budget."""

    used_bytes: int
    budget_bytes: int | None = None

    @property
    def over(self) -> bool:
        return self.budget_bytes is not None and self.used_bytes >= self.budget_bytes


def human_bytes(n: int) -> str:
    """``300 KiB``, ``800 MiB``, ``1.5 GiB``: sizes in messages people read."""
    value, unit = float(n), "bytes"
    for next_unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"


class StoreFull(StoreUnavailable):
    """New events are refused because the store is over its space budget (``--store-max-bytes``): the intake
    answers 507 before the volume is really full, so what is already accepted can still be delivered and logged."""

    def __init__(self, usage: StoreUsage) -> None:
        self.usage = usage
        budget = usage.budget_bytes or 0
        super().__init__(
            f"the event store is over its space budget ({human_bytes(usage.used_bytes)} used of "
            f"{human_bytes(budget)}, --store-max-bytes): nothing was accepted; queues drain and retention frees space"
        )


@dataclass(frozen=True)
class SpaceBudget:
    """How much space the store may use for new events: a fixed number of bytes, or a fraction of the volume it
    lives on (the default, 80 %, follows a resized volume). The rest of the volume is headroom for what keeps
    being written after the intake refuses: completions, the delivery log, the WAL."""

    max_bytes: int | None = None
    fraction: float | None = None

    def limit(self, volume_bytes: int | None) -> int | None:
        if self.max_bytes is not None:
            return self.max_bytes
        if self.fraction is not None and volume_bytes:
            return int(volume_bytes * self.fraction)
        return None


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
    #: The events were stored unrouted (``store.unrouted``): nothing is queued for them yet.
    unrouted: bool = False

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


@dataclass(frozen=True)
class KeyHold:
    """One held batch of a webhook that delivers in parallel (``spec.delivery.ordering`` entity or none), with its
    own retry schedule: ``key`` is the entity (ordering entity) or the batch (ordering none) it holds."""

    key: str
    qids: tuple[int, ...]
    attempts: int = 0
    next_attempt_at: float | None = None
    last_failed_at: float | None = None
    last_status_code: int | None = None
    last_reason: str | None = None


@dataclass(frozen=True)
class RetryState:
    """The batch a webhook is holding and when it is tried again; persisted so a restart resumes it exactly.

    Frozen so that the copy a lane holds and the copy a store keeps can never be the same mutable object: a lane
    changes its retry state by building a new one (``dataclasses.replace``) and saving it."""

    held_qids: tuple[int, ...] = ()
    attempts: int = 0
    next_attempt_at: float | None = None
    paused: str | None = None  # None, "retryLimitReached" or "failed"
    last_failed_at: float | None = None
    last_status_code: int | None = None
    last_reason: str | None = None
    #: While set, the webhook's fallback (``spec.fallback``, this ``namespace/name``) takes its events: set when it
    #: reached retryLimitReached or failed and its queue was handed over, cleared by resume or a successful test.
    fallback: str | None = None
    #: Ordering entity/none: every held batch with its own schedule. Then ``held_qids`` is the union of their qids,
    #: ``attempts`` the most of theirs, ``next_attempt_at`` the earliest, ``last_*`` the latest failure of any.
    holds: tuple[KeyHold, ...] = ()


@dataclass
class Counters:
    """Per-webhook totals for status. Mutable because the lane that loaded them keeps them current in memory
    between the store's commits; the store hands out a fresh copy on every read."""

    delivered: int = 0
    failed: int = 0
    last_success_at: float | None = None


@dataclass(frozen=True)
class LaneState:
    """Everything a lane needs from the store when it starts, read in one go so the parts agree with each other
    (a completion committed between separate reads could otherwise leave counters and queue out of step)."""

    retry: RetryState
    counters: Counters
    pending: int  # queued events of the webhook
    dead_letters: int = 0  # dead letters of the webhook still kept (retention removes them)
    dead_lettered_since: float | None = None  # when the oldest of them was dead-lettered


@dataclass(frozen=True)
class AttemptQuery:
    outcome: AttemptOutcome | None = None
    since: float | None = None
    until: float | None = None
    after_id: int | None = None  # cursor: the last id of the previous page
    limit: int = 100


class IntakeStore(Protocol):
    """What the intake needs: accept events durably, once."""

    async def enqueue(self, events: Sequence[RoutedEvent], *, routing: Routing = Routing.GIVEN) -> EnqueueResult:
        """Durably accept events and queue them per webhook (or store them unrouted: ``routing``). An event id the
        store already holds (from an earlier call or earlier in the same call, routed or not) is accepted once; its
        repeats get ``None`` and queue nothing. Raises ``StoreFull`` (taking nothing) over the space budget."""
        ...


class LaneStore(Protocol):
    """What one delivery lane needs to work its webhook's queue in order and survive a restart mid-retry."""

    async def lane_state(self, webhook: str) -> LaneState:
        """Retry state, counters and queue length of one webhook, from one consistent read."""
        ...

    async def pending(self, webhook: str, after_qid: int = 0, limit: int = 1000) -> list[QueuedEvent]:
        """Queued events of one webhook in order (used at start-up and to page a long backlog into memory)."""
        ...

    async def complete(self, webhook: str, qids: Sequence[int], record: AttemptRecord,
                       retry: RetryState | None = None) -> None:  # fmt: skip
        """The batch was delivered: dequeue it, log the attempt, count it, clear retry state — one commit. With
        ``retry`` (a lane delivering in parallel, where other batches are still held) save that instead of
        clearing."""
        ...

    async def fail(self, webhook: str, record: AttemptRecord, retry: RetryState) -> None:
        """A batch failed: log the attempt, count it and persist the retry state — one commit."""
        ...

    async def save_retry_state(self, webhook: str, retry: RetryState) -> None:
        """Persist a retry state change that is not an attempt (pause, resume, a rescheduled retry)."""
        ...

    async def skip(self, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
        """Dequeue a held batch into the dead letters, recorded in the log (never silently), and clear the retry
        state — one commit."""
        ...

    async def requeue(self, webhook: str, event_ids: Sequence[str], record: AttemptRecord) -> list[QueuedEvent]:
        """Queue stored events again for a webhook (redelivery), in the given order, behind everything already
        queued, and log ``record`` — one commit. Returns the new queue entries (ids the store does not hold are
        left out) so the dispatcher can deliver them without reading them back."""
        ...

    async def overdue(self, webhook: str, *, keep: int | None, received_before: float | None,
                      protect: Sequence[int] = (), limit: int = 1000) -> list[QueuedEvent]:  # fmt: skip
        """The queue entries a webhook's limits push out, oldest first, at most ``limit``: the oldest beyond the
        newest ``keep`` (all queued entries count, ``protect``-ed ones too), and every entry accepted before
        ``received_before``; never one in ``protect`` (the held batch). A read: nothing moves."""
        ...

    async def dead_letter(self, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
        """Move queue entries into the dead letters, logged with ``record`` (whose ``event_ids`` name them) — one
        commit. Unlike ``skip`` the retry state is left alone: the held batch is still being retried."""
        ...

    async def hand_over(self, webhook: str, to: str, first: Sequence[int], line: AttemptRecord,
                        to_line: AttemptRecord, retry: RetryState) -> list[QueuedEvent]:  # fmt: skip
        """The fallback takes over: move every queue entry of ``webhook`` to the tail of ``to``'s queue (the
        entries ``first`` names, the held batch, first; then the rest in queue order), log ``line`` for
        ``webhook`` and ``to_line`` for ``to`` (the store fills in the moved event ids on both), and save
        ``retry`` as ``webhook``'s retry state — one commit, so no entry is ever queued for both. Returns ``to``'s
        new entries in order."""
        ...


class LogStore(Protocol):
    """The delivery log and the stored events it refers to, for the API, status and redelivery."""

    async def log(self, record: AttemptRecord) -> None:
        """Append a line that is not part of a queue change (a test delivery, a resume)."""
        ...

    async def attempts(self, webhook: str, query: AttemptQuery) -> list[AttemptRecord]:
        """One webhook's log lines matching ``query``, oldest first; page with ``after_id``."""
        ...

    async def events_by_id(self, event_ids: Sequence[str]) -> list[QueuedEvent]:
        """The stored events among ``event_ids``, each once, in acceptance order (``qid`` is 0: not queued)."""
        ...

    async def routed_events(self, webhook: str, event_ids: Sequence[str]) -> list[QueuedEvent]:
        """The stored events among ``event_ids`` that were routed to ``webhook``, each once, in acceptance order
        (``qid`` 0): what redelivery by id may touch. Routed means queued for it now, named by a line of its
        delivery log written since the event was accepted (delivered, failed, skipped, resumed, redelivered to
        it; not a test line), or in its dead letters. Every way an entry leaves a queue leaves one of the last
        two in the same commit, so the answer holds after delivery, skip, dead-lettering and a restart, and
        costs the hot path nothing. An id that is not routed to ``webhook`` is left out exactly like one the
        store never had, so callers cannot tell another webhook's event from none."""
        ...

    async def delivered_events(
        self, webhook: str, since: float | None, until: float | None, limit: int
    ) -> list[QueuedEvent]:
        """Events accepted in ``[since, until)`` that the delivery log shows as delivered to (or skipped by)
        ``webhook``, in acceptance order: what "redeliver this webhook's events of that hour" means."""
        ...


class MaintenanceStore(Protocol):
    """What the service does around delivery: lifecycle, retention, forgetting deleted webhooks."""

    async def open(self) -> None: ...

    async def close(self) -> None:
        """Let acknowledged writes finish; afterwards every call raises ``StoreUnavailable``."""
        ...

    async def prune(self, older_than: float) -> int:
        """Drop log lines and dead letters older than the retention horizon, and events accepted before it that
        are neither queued nor kept by a dead letter (a dead letter keeps its event for a whole retention period
        from when it was dead-lettered, so it can be redelivered). Returns how many events were dropped."""
        ...

    async def usage(self) -> StoreUsage:
        """Live bytes and the space budget, measured now (metrics; ``enqueue`` raises ``StoreFull`` over it)."""
        ...

    async def purge(self, webhook: str) -> None:
        """Forget a deleted webhook: its queue, retry state, counters (the delivery log ages out by retention)."""
        ...

    async def webhook_keys(self) -> list[str]:
        """Every webhook the store holds anything for (queue, counters, retry state), sorted: what start-up
        reconciles against the webhooks that still exist."""
        ...


class Store(IntakeStore, LaneStore, LogStore, MaintenanceStore, LeaseStore, UnroutedStore, Protocol):
    """Everything a backend implements; callers that need one role should ask for that role's protocol."""
