"""SQLite store: the embedded default, WAL mode with group commit (``sqlite_commit``), one file per operator.

Each call is one operation of a group commit, so everything a call changes commits together or not at all.

The SQL is grouped by the role that calls it, one class per protocol of ``store.base``, so a change to what lanes
need stays inside ``_SqliteLanes`` and each part reads on its own; ``SqliteStore`` puts the roles back together over
the one ``GroupCommit`` they must share (one writer thread is what makes their commits group).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook_operator.store import unrouted_sqlite
from webhook_operator.store.base import (
    AttemptOutcome,
    AttemptQuery,
    AttemptRecord,
    Counters,
    EnqueueResult,
    Fence,
    IntakeStore,
    LaneState,
    LaneStore,
    LogStore,
    MaintenanceStore,
    QueuedEvent,
    RetryState,
    RoutedEvent,
    SpaceBudget,
    Store,
    StoreUsage,
)
from webhook_operator.store.budget import Budget
from webhook_operator.store.codec import attempt_filters, retry_from_json, retry_to_json
from webhook_operator.store.sqlite_commit import GroupCommit
from webhook_operator.store.sqlite_leases import SqliteLeases, lane_write
from webhook_operator.store.sqlite_schema import (
    INSERT_ATTEMPT,
    SCHEMA,
    UPSERT_WEBHOOK,
    attempt_from_row,
    event_from_row,
    qmarks,
    record_row,
    to_dead_letters,
)
from webhook_operator.store.unrouted import Routing, parks
from webhook_operator.store.unrouted_sqlite import SqliteUnrouted

_EVENT_COLUMNS = "e.seq, e.event_id, e.body, e.received_at"


class _SqliteBase:
    """The file and its group commit, shared by every role: the constructor of ``SqliteStore`` lives here so each
    role class can rely on ``_db`` and ``_clock`` being set."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", clock: Callable[[], float] = time.time,
                 max_bytes: int | None = None, budget: SpaceBudget | None = None) -> None:  # fmt: skip
        if synchronous not in {"FULL", "NORMAL", "EXTRA"}:
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = str(path)
        self._clock = clock
        self._db = GroupCommit(self.path, synchronous)
        if budget is None and max_bytes is not None:
            budget = SpaceBudget(max_bytes=max_bytes)
        self._budget = Budget(self.path, budget, clock)  # touched on the writer thread only
        self._fence: Fence | None = None  # lane writes are checked against it (``sqlite_leases``)


class _SqliteMaintenance(_SqliteBase):
    async def open(self) -> None:
        await self._db.open(SCHEMA)

    async def close(self) -> None:
        await self._db.close()

    async def prune(self, older_than: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM attempts WHERE started_at < ?", (older_than,))
            conn.execute("DELETE FROM dead_letters WHERE skipped_at < ?", (older_than,))
            removed = conn.execute(
                "DELETE FROM events WHERE received_at < ? AND seq NOT IN (SELECT seq FROM queue)"
                " AND seq NOT IN (SELECT seq FROM dead_letters) AND seq NOT IN (SELECT seq FROM unrouted)",
                (older_than,),
            ).rowcount
            return int(removed)

        return await self._db.write(op)

    async def usage(self) -> StoreUsage:
        return await self._db.read(self._budget.usage)

    async def purge(self, webhook: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM queue WHERE webhook = ?", (webhook,))
            conn.execute("DELETE FROM webhooks WHERE webhook = ?", (webhook,))

        await self._db.write(op)

    async def webhook_keys(self) -> list[str]:
        return await self._db.read(
            lambda conn: [r[0] for r in conn.execute(
                "SELECT webhook FROM queue UNION SELECT webhook FROM webhooks ORDER BY 1")]
        )  # fmt: skip


class _SqliteIntake(_SqliteBase):
    async def enqueue(self, events: Sequence[RoutedEvent], *, routing: Routing = Routing.GIVEN) -> EnqueueResult:
        now = self._clock()

        def op(conn: sqlite3.Connection) -> EnqueueResult:
            self._budget.check(conn, sum(len(e.body) + len(e.event_id) for e in events))
            park = parks(routing, routing is Routing.BEHIND_UNROUTED and unrouted_sqlite.waiting(conn))
            seqs: list[int | None] = []
            queued: dict[str, list[QueuedEvent]] = {}
            for event in events:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO events(event_id, received_at, body) VALUES (?,?,?)",
                    (event.event_id, now, event.body),
                )
                if cur.rowcount == 0:
                    seqs.append(None)
                    continue
                seq = int(cur.lastrowid or 0)
                seqs.append(seq)
                if park:
                    unrouted_sqlite.park(conn, seq)
                    continue
                for webhook in event.webhooks:
                    qcur = conn.execute("INSERT INTO queue(webhook, seq) VALUES (?,?)", (webhook, seq))
                    queued.setdefault(webhook, []).append(
                        QueuedEvent(int(qcur.lastrowid or 0), seq, event.event_id, event.body, now)
                    )
            return EnqueueResult(seqs, queued, unrouted=park)

        return await self._db.write(op)


class _SqliteLanes(_SqliteBase):
    async def lane_state(self, webhook: str) -> LaneState:
        def fn(conn: sqlite3.Connection) -> LaneState:
            # One statement, so one read transaction: retry, counters and queue length from the same commit.
            row = conn.execute(
                "SELECT w.retry, w.delivered, w.failed, w.last_success_at,"
                " (SELECT COUNT(*) FROM queue WHERE webhook = k.webhook),"
                " (SELECT COUNT(*) FROM dead_letters WHERE webhook = k.webhook),"
                " (SELECT MIN(skipped_at) FROM dead_letters WHERE webhook = k.webhook)"
                " FROM (SELECT ? AS webhook) k LEFT JOIN webhooks w ON w.webhook = k.webhook",
                (webhook,),
            ).fetchone()
            counters = Counters() if row[1] is None else Counters(int(row[1]), int(row[2]), row[3])
            return LaneState(retry_from_json(row[0]), counters, int(row[4]), int(row[5]), row[6])

        return await self._db.read(fn)

    async def pending(self, webhook: str, after_qid: int = 0, limit: int = 1000) -> list[QueuedEvent]:
        def fn(conn: sqlite3.Connection) -> list[QueuedEvent]:
            rows = conn.execute(
                f"SELECT q.qid, {_EVENT_COLUMNS} FROM queue q JOIN events e ON e.seq = q.seq "
                "WHERE q.webhook = ? AND q.qid > ? ORDER BY q.qid LIMIT ?",
                (webhook, after_qid, limit),
            ).fetchall()
            return [event_from_row(r[1:], qid=r[0]) for r in rows]

        return await self._db.read(fn)

    async def complete(self, webhook: str, qids: Sequence[int], record: AttemptRecord,
                       retry: RetryState | None = None) -> None:  # fmt: skip
        retry_json = retry_to_json(retry) if retry is not None else None  # None clears (NULL)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(f"DELETE FROM queue WHERE qid IN ({qmarks(len(qids))})", list(qids))
            conn.execute(INSERT_ATTEMPT, record_row(record))
            # One upsert, not an insert-if-missing and an update: this runs once per delivery (issue 12).
            conn.execute(
                "INSERT INTO webhooks(webhook, delivered, last_success_at, retry) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(webhook) DO UPDATE SET delivered = delivered + excluded.delivered,"
                " last_success_at = excluded.last_success_at, retry = excluded.retry",
                (webhook, len(qids), record.started_at + record.duration_ms / 1000, retry_json),
            )

        await lane_write(self, webhook, op, durable=False)

    async def fail(self, webhook: str, record: AttemptRecord, retry: RetryState) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(INSERT_ATTEMPT, record_row(record))
            conn.execute(UPSERT_WEBHOOK, (webhook,))
            conn.execute(
                "UPDATE webhooks SET failed = failed + 1, retry = ? WHERE webhook = ?", (retry_to_json(retry), webhook)
            )

        await lane_write(self, webhook, op, durable=False)

    async def save_retry_state(self, webhook: str, retry: RetryState) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(UPSERT_WEBHOOK, (webhook,))
            conn.execute("UPDATE webhooks SET retry = ? WHERE webhook = ?", (retry_to_json(retry), webhook))

        await lane_write(self, webhook, op)

    async def skip(self, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
        def op(conn: sqlite3.Connection) -> None:
            to_dead_letters(conn, webhook, qids, record)
            conn.execute("UPDATE webhooks SET retry = NULL WHERE webhook = ?", (webhook,))

        await lane_write(self, webhook, op)

    async def overdue(self, webhook: str, *, keep: int | None, received_before: float | None,
                      protect: Sequence[int] = (), limit: int = 1000) -> list[QueuedEvent]:  # fmt: skip
        select = f"SELECT q.qid, {_EVENT_COLUMNS} FROM queue q JOIN events e ON e.seq = q.seq WHERE q.webhook = ?"
        if protect:
            select += f" AND q.qid NOT IN ({qmarks(len(protect))})"

        def fn(conn: sqlite3.Connection) -> list[QueuedEvent]:
            rows: dict[int, Any] = {}
            if keep is not None:
                total = conn.execute("SELECT COUNT(*) FROM queue WHERE webhook = ?", (webhook,)).fetchone()[0]
                excess = min(max(0, int(total) - keep), limit)
                if excess:
                    found = conn.execute(f"{select} ORDER BY q.qid LIMIT ?", [webhook, *protect, excess])
                    rows.update((r[0], r) for r in found)
            if received_before is not None:
                found = conn.execute(
                    f"{select} AND e.received_at < ? ORDER BY q.qid LIMIT ?",
                    [webhook, *protect, received_before, limit],
                )
                rows.update((r[0], r) for r in found)
            return [event_from_row(rows[qid][1:], qid=qid) for qid in sorted(rows)[:limit]]

        return await self._db.read(fn)

    async def dead_letter(self, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
        await lane_write(self, webhook, lambda conn: to_dead_letters(conn, webhook, qids, record))

    async def hand_over(self, webhook: str, to: str, first: Sequence[int], line: AttemptRecord,
                        to_line: AttemptRecord, retry: RetryState) -> list[QueuedEvent]:  # fmt: skip
        def op(conn: sqlite3.Connection) -> list[QueuedEvent]:
            rows = conn.execute(
                f"SELECT q.qid, {_EVENT_COLUMNS} FROM queue q JOIN events e ON e.seq = q.seq "
                "WHERE q.webhook = ? ORDER BY q.qid",
                (webhook,),
            ).fetchall()
            leading = set(first)
            conn.execute("DELETE FROM queue WHERE webhook = ?", (webhook,))
            entries: list[QueuedEvent] = []
            for row in [r for r in rows if r[0] in leading] + [r for r in rows if r[0] not in leading]:
                cur = conn.execute("INSERT INTO queue(webhook, seq) VALUES (?,?)", (to, row[1]))
                entries.append(event_from_row(row[1:], qid=int(cur.lastrowid or 0)))
            moved = [e.event_id for e in entries]
            conn.execute(INSERT_ATTEMPT, record_row(replace(line, event_ids=moved)))
            conn.execute(INSERT_ATTEMPT, record_row(replace(to_line, event_ids=moved)))
            conn.execute(UPSERT_WEBHOOK, (webhook,))
            conn.execute("UPDATE webhooks SET retry = ? WHERE webhook = ?", (retry_to_json(retry), webhook))
            return entries

        return await lane_write(self, webhook, op)  # the source's lease only

    async def requeue(self, webhook: str, event_ids: Sequence[str], record: AttemptRecord) -> list[QueuedEvent]:
        def op(conn: sqlite3.Connection) -> list[QueuedEvent]:
            entries: list[QueuedEvent] = []
            for event_id in event_ids:  # keep the caller's order
                row = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.event_id = ?", (event_id,)
                ).fetchone()
                if row is None:
                    continue
                cur = conn.execute("INSERT INTO queue(webhook, seq) VALUES (?,?)", (webhook, row[0]))
                entries.append(event_from_row(row, qid=int(cur.lastrowid or 0)))
            conn.execute(INSERT_ATTEMPT, record_row(record))
            return entries

        return await lane_write(self, webhook, op)


class _SqliteLog(_SqliteBase):
    async def log(self, record: AttemptRecord) -> None:
        await self._db.write(lambda conn: conn.execute(INSERT_ATTEMPT, record_row(record)), durable=False)

    async def attempts(self, webhook: str, query: AttemptQuery) -> list[AttemptRecord]:
        clauses, params = attempt_filters(webhook, query, lambda n: "?")

        def fn(conn: sqlite3.Connection) -> list[AttemptRecord]:
            rows = conn.execute(
                "SELECT id, webhook, delivery_id, event_ids, attempt, started_at, duration_ms, outcome, status_code,"
                f" error, response_body, note FROM attempts WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
                [*params, query.limit],
            ).fetchall()
            return [attempt_from_row(r) for r in rows]

        return await self._db.read(fn)

    async def events_by_id(self, event_ids: Sequence[str]) -> list[QueuedEvent]:
        def fn(conn: sqlite3.Connection) -> list[QueuedEvent]:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.event_id IN ({qmarks(len(event_ids))}) ORDER BY e.seq",
                list(event_ids),
            ).fetchall()
            return [event_from_row(r) for r in rows]

        return await self._db.read(fn) if event_ids else []

    async def routed_events(self, webhook: str, event_ids: Sequence[str]) -> list[QueuedEvent]:
        asked = json.dumps(list(dict.fromkeys(event_ids)))

        def fn(conn: sqlite3.Connection) -> list[QueuedEvent]:
            conn.execute("BEGIN")  # one snapshot: an entry that leaves the queue mid-read is seen where it went
            try:
                rows = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.event_id IN (SELECT value FROM json_each(?)) "
                    "ORDER BY e.seq",
                    (asked,),
                ).fetchall()
                if not rows:
                    return []
                # Driven by the asked seqs (the seq indexes), not by the webhook's whole queue.
                seqs = json.dumps([r[0] for r in rows])
                held = {r[0] for r in conn.execute(
                    "SELECT q.seq FROM json_each(?1) j CROSS JOIN queue q ON q.seq = j.value WHERE q.webhook = ?2 "
                    "UNION SELECT d.seq FROM json_each(?1) j CROSS JOIN dead_letters d ON d.seq = j.value "
                    "WHERE d.webhook = ?2",
                    (seqs, webhook))}  # fmt: skip
                rest = [r for r in rows if r[0] not in held]
                # The rest from the webhook's log lines since the oldest of them was accepted: a scan of those lines
                # (a JSON list each), which a rare operator request pays so that the hot path writes nothing more.
                logged: dict[str, float] = {}
                if rest:
                    logged = dict(conn.execute(
                        "SELECT j.value, MAX(a.started_at) FROM attempts a, json_each(a.event_ids) j "
                        "WHERE a.webhook = ? AND a.outcome != ? AND a.started_at >= ? "
                        "AND j.value IN (SELECT value FROM json_each(?)) GROUP BY j.value",
                        (webhook, AttemptOutcome.TEST.value, min(r[3] for r in rest),
                         json.dumps([r[1] for r in rest]))).fetchall())  # fmt: skip
            finally:
                conn.execute("COMMIT")
            # A line older than the event names an earlier event of the same id (pruned, then accepted again).
            return [event_from_row(r) for r in rows if r[0] in held or logged.get(r[1], -1.0) >= r[3]]

        return await self._db.read(fn) if event_ids else []

    async def delivered_events(
        self, webhook: str, since: float | None, until: float | None, limit: int
    ) -> list[QueuedEvent]:
        low = since if since is not None else 0.0
        high = until if until is not None else float("inf")

        def fn(conn: sqlite3.Connection) -> list[QueuedEvent]:
            # An event is attempted after it was accepted, so attempts before ``since`` cannot hold one of them.
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events e "
                "WHERE e.received_at >= ? AND e.received_at < ? AND e.event_id IN ("
                "  SELECT j.value FROM attempts a, json_each(a.event_ids) j"
                "  WHERE a.webhook = ? AND a.outcome IN (?, ?) AND a.started_at >= ?) "
                "ORDER BY e.seq LIMIT ?",
                (low, high, webhook, AttemptOutcome.DELIVERED.value, AttemptOutcome.SKIPPED.value, low, limit),
            ).fetchall()
            return [event_from_row(r) for r in rows]

        return await self._db.read(fn)


class SqliteStore(_SqliteIntake, _SqliteLanes, _SqliteLog, _SqliteMaintenance, SqliteUnrouted, SqliteLeases):
    """Store protocol on one SQLite file. ``synchronous=FULL`` (default) makes every commit survive power loss;
    ``NORMAL`` survives process crashes only and is faster. ``clock`` stamps accepted events (tests pin it)."""

    @property
    def commits(self) -> int:
        """Transactions committed so far: observable for tests and benchmarks (group commit efficiency)."""
        return self._db.commits


if TYPE_CHECKING:  # mypy proves the whole protocol is implemented, not only the calls tests happen to make,
    # and that each role class implements its own role (a method moved to the wrong class would still satisfy Store)
    _conforms: type[Store] = SqliteStore
    _roles: tuple[type[IntakeStore], type[LaneStore], type[LogStore], type[MaintenanceStore]] = (
        _SqliteIntake, _SqliteLanes, _SqliteLog, _SqliteMaintenance)  # fmt: skip
