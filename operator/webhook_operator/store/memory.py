"""In-memory store: the Store protocol without disk or threads, for unit tests of lanes and operations.

It mirrors SqliteStore call for call, including its quirks, because tests that pass against it must mean the same
thing in production; ``tests/unit/store/test_contract.py`` runs the same suite against both to keep it so. Every
call changes its state before its first ``await``, so a call is atomic the way one SQLite transaction is, and then
yields once, so callers still see a suspension point where the real store would commit.

Two things SQLite cannot easily do on demand make it useful beyond speed: ``fail_writes``/``fail_reads`` simulate
an outage (disk full, database gone), and ``close()`` keeps the contents, so opening the same instance again is a
restart that lost nothing, as a synced file would be.

Like ``store.sqlite`` it is one class per role of ``store.base`` over one shared state (``_MemoryState``, which also
holds the bookkeeping several roles need, such as dequeuing by qid), so the two backends read side by side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import count, islice
from typing import TYPE_CHECKING

from webhook_operator.store.base import (
    AttemptOutcome,
    AttemptQuery,
    AttemptRecord,
    Counters,
    EnqueueResult,
    IntakeStore,
    LaneState,
    LaneStore,
    LogStore,
    MaintenanceStore,
    QueuedEvent,
    RetryState,
    RoutedEvent,
    Store,
    StoreFull,
    StoreUnavailable,
    StoreUsage,
)
from webhook_operator.store.memory_leases import LeaseBook, MemoryLeases
from webhook_operator.store.unrouted import Routing, parks
from webhook_operator.store.unrouted_memory import MemoryUnrouted

_LOGGED_AS_DELIVERED = frozenset({AttemptOutcome.DELIVERED, AttemptOutcome.SKIPPED})


@dataclass(frozen=True)
class DeadLetter:
    """A skipped queue entry, as SQLite's ``dead_letters`` table keeps it (no protocol call reads them; tests may)."""

    webhook: str
    seq: int
    event_id: str
    skipped_at: float
    attempt_id: int


@dataclass
class _Webhook:
    """SQLite's ``webhooks`` row: it exists once a lane completed, failed, skipped or saved retry state."""

    retry: RetryState | None = None
    counters: Counters = field(default_factory=Counters)


def _take(items: Iterable[QueuedEvent], limit: int) -> list[QueuedEvent]:
    return list(items if limit < 0 else islice(items, limit))  # SQLite: a negative LIMIT means no limit


class _MemoryState:
    """The tables every role reads and writes, and the helpers that keep them consistent with each other (a qid is
    in ``_queues`` exactly when it is in ``_queued_in``); the constructor of ``MemoryStore`` lives here so each role
    class can rely on them being set."""

    def __init__(self, *, clock: Callable[[], float] = time.time, max_bytes: int | None = None) -> None:
        self.fail_writes = False
        self.max_bytes = max_bytes  # the space budget; live bytes are the stored bodies and ids
        self._bytes = 0
        self.fail_reads = False
        self.dead_letters: list[DeadLetter] = []
        self._clock = clock
        self._open = False
        self._events: dict[str, QueuedEvent] = {}  # by event id, qid 0; insertion order is seq order
        self._by_seq: dict[int, QueuedEvent] = {}
        self._queues: dict[str, dict[int, int]] = {}  # webhook -> {qid: seq}, in qid order
        self._queued_in: dict[int, str] = {}  # qid -> webhook
        self._webhooks: dict[str, _Webhook] = {}
        self._log: list[AttemptRecord] = []  # in id order
        # AUTOINCREMENT: numbers are never reused, not even after prune or purge removed the highest.
        self._seqs, self._qids, self._attempt_ids = count(1), count(1), count(1)
        self.unrouted_seqs: dict[int, None] = {}  # events accepted unrouted, in seq order (``unrouted_memory``)
        self.lease_book = LeaseBook()  # replicas, leases and the fence (``store.memory_leases``)

    def _writable(self) -> None:
        if not self._open:
            raise StoreUnavailable("store is not open")
        if self.fail_writes:
            raise StoreUnavailable("simulated outage: writes fail")

    def _fenced(self, webhook: str) -> None:
        """A lane write's first step once writable: raise ``LeaseLost`` (changing nothing) if a fence is set and
        ``webhook``'s lease is no longer the fence's."""
        self._writable()
        self.lease_book.check(self._clock(), webhook)

    def _readable(self) -> None:
        if not self._open:
            raise StoreUnavailable("store is not open")
        if self.fail_reads:
            raise StoreUnavailable("simulated outage: reads fail")

    def _queue(self, webhook: str, seq: int) -> int:
        qid = next(self._qids)
        self._queues.setdefault(webhook, {})[qid] = seq
        self._queued_in[qid] = webhook
        return qid

    def _dequeue(self, qids: Iterable[int]) -> list[tuple[int, str, int]]:
        """Remove entries by qid whatever webhook they belong to, as SQLite's ``DELETE ... WHERE qid IN``."""
        removed = []
        for qid in dict.fromkeys(qids):
            webhook = self._queued_in.pop(qid, None)
            if webhook is not None:
                queue = self._queues[webhook]
                removed.append((qid, webhook, queue.pop(qid)))
                if not queue:
                    del self._queues[webhook]
        return removed

    def _append_log(self, record: AttemptRecord) -> int:
        attempt_id = next(self._attempt_ids)
        self._log.append(replace(record, id=attempt_id, event_ids=list(record.event_ids)))
        return attempt_id

    def _row(self, webhook: str) -> _Webhook:
        return self._webhooks.setdefault(webhook, _Webhook())

    def _usage(self) -> StoreUsage:
        return StoreUsage(self._bytes, self.max_bytes)

    def _forget_event(self, event_id: str) -> None:
        event = self._events.pop(event_id)
        del self._by_seq[event.seq]
        self._bytes -= len(event.body) + len(event.event_id)

    def _to_dead_letters(self, qids: Iterable[int], at: float, attempt_id: int) -> None:
        for _, owner, seq in sorted(self._dequeue(qids)):
            self.dead_letters.append(DeadLetter(owner, seq, self._by_seq[seq].event_id, at, attempt_id))


class _MemoryMaintenance(_MemoryState):
    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def prune(self, older_than: float) -> int:
        self._writable()
        self._log = [r for r in self._log if r.started_at >= older_than]
        self.dead_letters = [d for d in self.dead_letters if d.skipped_at >= older_than]
        kept = {seq for queue in self._queues.values() for seq in queue.values()} | {d.seq for d in self.dead_letters}
        kept.update(self.unrouted_seqs)  # an unrouted event is kept like a queued one
        doomed = [e.event_id for e in self._events.values() if e.received_at < older_than and e.seq not in kept]
        for event_id in doomed:
            self._forget_event(event_id)
        await asyncio.sleep(0)
        return len(doomed)

    async def usage(self) -> StoreUsage:
        self._readable()
        return self._usage()

    async def purge(self, webhook: str) -> None:
        self._writable()
        self._dequeue(list(self._queues.get(webhook, {})))
        self._webhooks.pop(webhook, None)
        await asyncio.sleep(0)

    async def webhook_keys(self) -> list[str]:
        self._readable()
        return sorted(self._queues.keys() | self._webhooks.keys())


class _MemoryIntake(_MemoryState):
    async def enqueue(self, events: Sequence[RoutedEvent], *, routing: Routing = Routing.GIVEN) -> EnqueueResult:
        self._writable()
        if self._usage().over:
            raise StoreFull(self._usage())
        now = self._clock()
        park = parks(routing, bool(self.unrouted_seqs))
        seqs: list[int | None] = []
        queued: dict[str, list[QueuedEvent]] = {}
        for event in events:
            if event.event_id in self._events:
                seqs.append(None)
                continue
            seq = next(self._seqs)
            seqs.append(seq)
            self._events[event.event_id] = self._by_seq[seq] = QueuedEvent(0, seq, event.event_id, event.body, now)
            self._bytes += len(event.body) + len(event.event_id)
            if park:
                self.unrouted_seqs[seq] = None
                continue
            for webhook in event.webhooks:
                qid = self._queue(webhook, seq)
                queued.setdefault(webhook, []).append(QueuedEvent(qid, seq, event.event_id, event.body, now))
        await asyncio.sleep(0)
        return EnqueueResult(seqs, queued, unrouted=park)


class _MemoryLanes(_MemoryState):
    async def lane_state(self, webhook: str) -> LaneState:
        self._readable()
        row = self._webhooks.get(webhook, _Webhook())
        dead = [d.skipped_at for d in self.dead_letters if d.webhook == webhook]
        # A copy of the counters: the lane owns and mutates what it is given.
        return LaneState(row.retry or RetryState(), replace(row.counters), len(self._queues.get(webhook, {})),
                         len(dead), min(dead, default=None))  # fmt: skip

    async def pending(self, webhook: str, after_qid: int = 0, limit: int = 1000) -> list[QueuedEvent]:
        self._readable()
        entries = (
            replace(self._by_seq[seq], qid=qid) for qid, seq in self._queues.get(webhook, {}).items() if qid > after_qid
        )
        return _take(entries, limit)

    async def complete(self, webhook: str, qids: Sequence[int], record: AttemptRecord,
                       retry: RetryState | None = None) -> None:  # fmt: skip
        self._fenced(webhook)
        self._dequeue(qids)
        self._append_log(record)
        row = self._row(webhook)
        # As SQLite: counts the qids given (not how many were still queued) and clears any retry state.
        row.counters.delivered += len(qids)
        row.counters.last_success_at = record.started_at + record.duration_ms / 1000
        row.retry = retry  # None clears; a parallel lane passes what its other keys still hold
        await asyncio.sleep(0)

    async def fail(self, webhook: str, record: AttemptRecord, retry: RetryState) -> None:
        self._fenced(webhook)
        self._append_log(record)
        row = self._row(webhook)
        row.counters.failed += 1  # one per failed attempt, not per event
        row.retry = retry
        await asyncio.sleep(0)

    async def save_retry_state(self, webhook: str, retry: RetryState) -> None:
        self._fenced(webhook)
        self._row(webhook).retry = retry
        await asyncio.sleep(0)

    async def skip(self, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
        self._fenced(webhook)
        attempt_id = self._append_log(record)
        self._to_dead_letters(qids, record.started_at, attempt_id)
        self._row(webhook).retry = None  # counters untouched: a skip is neither a delivery nor a failure
        await asyncio.sleep(0)

    async def overdue(self, webhook: str, *, keep: int | None, received_before: float | None,
                      protect: Sequence[int] = (), limit: int = 1000) -> list[QueuedEvent]:  # fmt: skip
        self._readable()
        queue = self._queues.get(webhook, {})
        excess = max(0, len(queue) - keep) if keep is not None else 0
        shielded = set(protect)
        candidates = [(qid, seq) for qid, seq in queue.items() if qid not in shielded]
        picked = [
            replace(self._by_seq[seq], qid=qid)
            for n, (qid, seq) in enumerate(candidates)
            if n < excess or (received_before is not None and self._by_seq[seq].received_at < received_before)
        ]
        return _take(picked, limit)

    async def dead_letter(self, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
        self._fenced(webhook)
        attempt_id = self._append_log(record)
        self._to_dead_letters(qids, record.started_at, attempt_id)
        self._row(webhook)  # the webhook is known to the store from now on, as in SQLite; retry state untouched
        await asyncio.sleep(0)

    async def hand_over(self, webhook: str, to: str, first: Sequence[int], line: AttemptRecord,
                        to_line: AttemptRecord, retry: RetryState) -> list[QueuedEvent]:  # fmt: skip
        self._fenced(webhook)  # only the source's lease: ``to`` may be another replica's
        queue = self._queues.get(webhook, {})
        leading = [qid for qid in dict.fromkeys(first) if qid in queue]
        order = leading + [qid for qid in queue if qid not in set(leading)]
        seqs = [queue[qid] for qid in order]
        self._dequeue(order)
        entries = [replace(self._by_seq[seq], qid=self._queue(to, seq)) for seq in seqs]
        moved = [e.event_id for e in entries]
        self._append_log(replace(line, event_ids=moved))
        self._append_log(replace(to_line, event_ids=moved))
        self._row(webhook).retry = retry
        await asyncio.sleep(0)
        return entries

    async def requeue(self, webhook: str, event_ids: Sequence[str], record: AttemptRecord) -> list[QueuedEvent]:
        self._fenced(webhook)
        entries = []
        for event_id in event_ids:  # the caller's order; a repeated id queues again, as in SQLite
            event = self._events.get(event_id)
            if event is not None:
                entries.append(replace(event, qid=self._queue(webhook, event.seq)))
        self._append_log(record)
        await asyncio.sleep(0)
        return entries


class _MemoryLog(_MemoryState):
    async def log(self, record: AttemptRecord) -> None:
        self._writable()
        self._append_log(record)
        await asyncio.sleep(0)

    async def attempts(self, webhook: str, query: AttemptQuery) -> list[AttemptRecord]:
        self._readable()
        matching = (
            replace(r, event_ids=list(r.event_ids))  # a copy, so a caller cannot edit the log
            for r in self._log
            if r.webhook == webhook
            and (query.outcome is None or r.outcome == query.outcome)
            and (query.since is None or r.started_at >= query.since)
            and (query.until is None or r.started_at < query.until)
            and (query.after_id is None or (r.id or 0) > query.after_id)
        )
        return list(matching if query.limit < 0 else islice(matching, query.limit))

    async def events_by_id(self, event_ids: Sequence[str]) -> list[QueuedEvent]:
        self._readable()
        wanted = set(event_ids)
        return [e for e in self._events.values() if e.event_id in wanted]

    async def routed_events(self, webhook: str, event_ids: Sequence[str]) -> list[QueuedEvent]:
        self._readable()
        wanted = set(event_ids)
        asked = [e for e in self._events.values() if e.event_id in wanted]
        held = set(self._queues.get(webhook, {}).values()) | {d.seq for d in self.dead_letters if d.webhook == webhook}
        logged: dict[str, float] = {}  # event id -> latest line naming it (as SQLite: test lines never count)
        for r in self._log:
            if r.webhook == webhook and r.outcome != AttemptOutcome.TEST:
                for event_id in wanted.intersection(r.event_ids):
                    logged[event_id] = max(logged.get(event_id, r.started_at), r.started_at)
        # A line older than the event names an earlier event of the same id (pruned, then accepted again).
        return [e for e in asked if e.seq in held or logged.get(e.event_id, -1.0) >= e.received_at]

    async def delivered_events(
        self, webhook: str, since: float | None, until: float | None, limit: int
    ) -> list[QueuedEvent]:
        self._readable()
        low = since if since is not None else 0.0
        high = until if until is not None else float("inf")
        # As SQLite: only log lines from ``since`` on count (an event is attempted after it was accepted).
        logged = {
            event_id
            for r in self._log
            if r.webhook == webhook and r.outcome in _LOGGED_AS_DELIVERED and r.started_at >= low
            for event_id in r.event_ids
        }
        return _take((e for e in self._events.values() if low <= e.received_at < high and e.event_id in logged), limit)


class MemoryStore(_MemoryIntake, _MemoryLanes, _MemoryLog, _MemoryMaintenance, MemoryLeases, MemoryUnrouted):
    """Store protocol in dictionaries. ``clock`` stamps accepted events (tests pin it).

    Set ``fail_writes`` (or ``fail_reads``) to make every write (read) raise ``StoreUnavailable`` without changing
    anything, as SQLite does when its disk is full; clear it and the store works again. Like SqliteStore it must be
    opened before use and raises ``StoreUnavailable`` once closed."""


if TYPE_CHECKING:  # mypy proves the whole protocol is implemented, not only the calls tests happen to make,
    # and that each role class implements its own role (a method moved to the wrong class would still satisfy Store)
    _conforms: type[Store] = MemoryStore
    _roles: tuple[type[IntakeStore], type[LaneStore], type[LogStore], type[MaintenanceStore]] = (
        _MemoryIntake, _MemoryLanes, _MemoryLog, _MemoryMaintenance)  # fmt: skip
