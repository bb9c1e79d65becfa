"""PostgreSQL store: the Store protocol on a database that several operator replicas can share (issue 15).

It mirrors ``SqliteStore`` call for call (``tests/unit/store/test_contract.py`` runs the same suite against both):
acknowledged means committed, a duplicate event id is accepted once however many replicas receive it (a unique
``event_id`` with ``ON CONFLICT DO NOTHING``), a webhook's queue is ordered by ``qid``, and each call's changes commit
together or not at all. Most calls are a single statement; the concurrency (pool, ordered group commit, error
mapping) lives in ``postgres_pool``, the intake's coalescing ``enqueue`` in ``postgres_intake`` and the schema
and its migrations in ``postgres_schema``.

As in ``store.sqlite`` the SQL is grouped by the role that calls it, one class per protocol of ``store.base``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from webhook_operator.store.base import (
    AttemptOutcome,
    AttemptQuery,
    AttemptRecord,
    Counters,
    IntakeStore,
    LaneState,
    LaneStore,
    LogStore,
    MaintenanceStore,
    QueuedEvent,
    RetryState,
    Store,
    StoreUsage,
)
from webhook_operator.store.codec import attempt_filters, retry_from_json, retry_to_json
from webhook_operator.store.postgres_intake import PgIntake
from webhook_operator.store.postgres_leases import PgFencing, PgLeases
from webhook_operator.store.postgres_pool import PgBase
from webhook_operator.store.postgres_schema import (
    ATTEMPT_COLUMNS,
    EVENT_COLUMNS,
    INSERT_ATTEMPT,
    QUEUE_LOCK,
    attempt_from_row,
    event_from_row,
    record_row,
    texts,
)
from webhook_operator.store.unrouted_postgres import PgUnrouted

# Queue entries -> dead letters with their log line, in one statement ($1-$11 the record, $12 the qids); the
# final INSERT makes the webhook known to the store (SQLite's upsert), ``{on_conflict}`` says what else it does.
_DEAD_LETTER = (
    "WITH a AS (" + INSERT_ATTEMPT + "), "
    "moved AS (DELETE FROM queue q WHERE q.qid = ANY($12::bigint[]) RETURNING q.webhook, q.seq), "
    "dl AS (INSERT INTO dead_letters(webhook, seq, event_id, skipped_at, attempt_id) "
    "  SELECT m.webhook, m.seq, e.event_id, $5, (SELECT id FROM a) FROM moved m JOIN events e ON e.seq = m.seq) "
    "INSERT INTO webhooks(webhook) VALUES ($13) ON CONFLICT (webhook) {on_conflict}"
)


#: Rows one prune statement deletes at most (a transaction of its own).
PRUNE_CHUNK = 5000


async def _deleted(status: Awaitable[str]) -> int:
    """The row count of a ``DELETE n`` command status."""
    return int((await status).rsplit(" ", 1)[-1])


def _limit(n: int) -> int | None:
    return None if n < 0 else n  # SQLite: a negative LIMIT means no limit; PostgreSQL: LIMIT NULL does


class _PgMaintenance(PgBase):
    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def prune(self, older_than: float) -> int:
        """In chunks, each its own short transaction: a week of events pruned at once must not hold the queue lock
        (and so the intake) for the whole delete. Unlike SQLite's one-transaction prune, an interrupted prune
        leaves some of the old rows; the next one takes them."""
        for sql in (
            "DELETE FROM attempts WHERE id = ANY(ARRAY(SELECT id FROM attempts WHERE started_at < $1 LIMIT $2))",
            "DELETE FROM dead_letters WHERE ctid = ANY(ARRAY("
            "  SELECT ctid FROM dead_letters WHERE skipped_at < $1 LIMIT $2))",
        ):

            async def chunk(conn: Any, sql: str = sql) -> int:
                return await _deleted(conn.execute(sql, older_than, PRUNE_CHUNK))

            while await self._db.run(chunk, "prune") == PRUNE_CHUNK:
                pass

        async def events(conn: Any) -> int:
            # Under the queue lock, and in a statement (a snapshot) that starts after it is held: a redelivery
            # queueing one of these events again has either committed (its queue row is seen) or not begun. The
            # budget's byte counter goes down in the same statement.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", QUEUE_LOCK)
            return int(await conn.fetchval(
                "WITH d AS (DELETE FROM events WHERE seq = ANY(ARRAY(SELECT e.seq FROM events e"
                " WHERE e.received_at < $1"
                " AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.seq = e.seq)"
                " AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.seq = e.seq)"
                " AND NOT EXISTS (SELECT 1 FROM unrouted u WHERE u.seq = e.seq) LIMIT $2))"
                " RETURNING octet_length(body) + octet_length(event_id) AS n),"
                " u AS (UPDATE store_stats SET event_bytes = event_bytes - (SELECT COALESCE(SUM(n), 0) FROM d))"
                " SELECT COUNT(*) FROM d",
                older_than, PRUNE_CHUNK,
            ))  # fmt: skip

        removed = 0
        while True:
            n = await self._db.transaction(events, "prune")
            removed += n
            if n < PRUNE_CHUNK:
                return removed

    async def usage(self) -> StoreUsage:
        return await self._db.run(self._budget.measure, "usage")

    async def purge(self, webhook: str) -> None:
        await self._db.run(
            lambda conn: conn.execute(
                "WITH q AS (DELETE FROM queue WHERE webhook = $1) DELETE FROM webhooks WHERE webhook = $1", webhook
            ),
            "purge",
        )

    async def webhook_keys(self) -> list[str]:
        rows = await self._db.run(
            lambda conn: conn.fetch(
                "SELECT webhook FROM (SELECT webhook FROM queue UNION SELECT webhook FROM webhooks) k"
                ' ORDER BY webhook COLLATE "C"'
            )
        )
        return [r[0] for r in rows]


class _PgLanes(PgFencing):
    async def lane_state(self, webhook: str) -> LaneState:
        # One statement, so one snapshot: retry, counters and queue length from the same commit.
        row = await self._db.run(
            lambda conn: conn.fetchrow(
                "SELECT w.retry::text, w.delivered, w.failed, w.last_success_at,"
                " (SELECT COUNT(*) FROM queue WHERE webhook = $1),"
                " (SELECT COUNT(*) FROM dead_letters WHERE webhook = $1),"
                " (SELECT MIN(skipped_at) FROM dead_letters WHERE webhook = $1)"
                " FROM (SELECT $1::text AS webhook) k LEFT JOIN webhooks w ON w.webhook = k.webhook",
                webhook,
            )
        )
        counters = Counters() if row[1] is None else Counters(int(row[1]), int(row[2]), row[3])
        return LaneState(retry_from_json(row[0]), counters, int(row[4]), int(row[5]), row[6])

    async def pending(self, webhook: str, after_qid: int = 0, limit: int = 1000) -> list[QueuedEvent]:
        rows = await self._db.run(
            lambda conn: conn.fetch(
                f"SELECT q.qid, {EVENT_COLUMNS} FROM queue q JOIN events e ON e.seq = q.seq "
                "WHERE q.webhook = $1 AND q.qid > $2 ORDER BY q.qid LIMIT $3",
                webhook, after_qid, _limit(limit),
            )
        )  # fmt: skip
        return [event_from_row(tuple(r)[1:], qid=r[0]) for r in rows]

    async def complete(self, webhook: str, qids: Sequence[int], record: AttemptRecord,
                       retry: RetryState | None = None) -> None:  # fmt: skip
        retry_json = retry_to_json(retry) if retry is not None else None  # None clears (NULL)
        await self._lane_write(
            webhook,
            lambda conn: conn.execute(
                "WITH d AS (DELETE FROM queue WHERE qid = ANY($12::bigint[])), a AS (" + INSERT_ATTEMPT + ") "
                "INSERT INTO webhooks(webhook, delivered, last_success_at, retry) VALUES ($13, $14, $15, $16::jsonb) "
                "ON CONFLICT (webhook) DO UPDATE SET delivered = webhooks.delivered + EXCLUDED.delivered,"
                " last_success_at = EXCLUDED.last_success_at, retry = EXCLUDED.retry",
                *record_row(record), list(qids), webhook, len(qids), record.started_at + record.duration_ms / 1000,
                retry_json,
            ),
            "complete",
        )  # fmt: skip

    async def fail(self, webhook: str, record: AttemptRecord, retry: RetryState) -> None:
        await self._lane_write(
            webhook,
            lambda conn: conn.execute(
                "WITH a AS (" + INSERT_ATTEMPT + ") INSERT INTO webhooks(webhook, failed, retry) "
                "VALUES ($12, 1, $13::jsonb) ON CONFLICT (webhook) DO UPDATE SET failed = webhooks.failed + 1,"
                " retry = EXCLUDED.retry",
                *record_row(record), webhook, retry_to_json(retry),
            ),
            "fail",
        )  # fmt: skip

    async def save_retry_state(self, webhook: str, retry: RetryState) -> None:
        await self._lane_write(
            webhook,
            lambda conn: conn.execute(
                "INSERT INTO webhooks(webhook, retry) VALUES ($1, $2::jsonb) "
                "ON CONFLICT (webhook) DO UPDATE SET retry = EXCLUDED.retry",
                webhook, retry_to_json(retry),
            ),
            "save retry state",
        )  # fmt: skip

    async def skip(self, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
        sql = _DEAD_LETTER.format(on_conflict="DO UPDATE SET retry = NULL")
        await self._lane_write(
            webhook, lambda conn: conn.execute(sql, *record_row(record), list(qids), webhook), "skip"
        )

    async def dead_letter(self, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
        sql = _DEAD_LETTER.format(on_conflict="DO NOTHING")
        await self._lane_write(
            webhook, lambda conn: conn.execute(sql, *record_row(record), list(qids), webhook), "dead-letter"
        )

    async def overdue(self, webhook: str, *, keep: int | None, received_before: float | None,
                      protect: Sequence[int] = (), limit: int = 1000) -> list[QueuedEvent]:  # fmt: skip
        select = (
            f"SELECT q.qid, {EVENT_COLUMNS} FROM queue q JOIN events e ON e.seq = q.seq "
            "WHERE q.webhook = $1 AND NOT (q.qid = ANY($2::bigint[]))"
        )

        async def fn(conn: Any) -> list[QueuedEvent]:
            rows: dict[int, Any] = {}
            async with conn.transaction(isolation="repeatable_read", readonly=True):  # one snapshot
                if keep is not None:
                    total = await conn.fetchval("SELECT COUNT(*) FROM queue WHERE webhook = $1", webhook)
                    excess = min(max(0, int(total) - keep), limit) if limit >= 0 else max(0, int(total) - keep)
                    if excess:
                        found = await conn.fetch(f"{select} ORDER BY q.qid LIMIT $3", webhook, list(protect), excess)
                        rows.update((r[0], r) for r in found)
                if received_before is not None:
                    found = await conn.fetch(
                        f"{select} AND e.received_at < $3 ORDER BY q.qid LIMIT $4",
                        webhook, list(protect), received_before, _limit(limit),
                    )  # fmt: skip
                    rows.update((r[0], r) for r in found)
            picked = sorted(rows) if limit < 0 else sorted(rows)[:limit]
            return [event_from_row(tuple(rows[qid])[1:], qid=qid) for qid in picked]

        return await self._db.run(fn, "overdue")

    async def hand_over(self, webhook: str, to: str, first: Sequence[int], line: AttemptRecord,
                        to_line: AttemptRecord, retry: RetryState) -> list[QueuedEvent]:  # fmt: skip
        async def op(conn: Any) -> list[QueuedEvent]:
            await self._guard(conn, webhook)  # only the source's lease: ``to`` may be another replica's
            rows = await conn.fetch(
                f"DELETE FROM queue q USING events e WHERE e.seq = q.seq AND q.webhook = $1 "
                f"RETURNING q.qid, {EVENT_COLUMNS}",
                webhook,
            )
            leading = set(first)
            ordered = sorted(rows, key=lambda r: (r[0] not in leading, r[0]))
            entries: list[QueuedEvent] = []
            if ordered:
                self._db.touch([to])
                qids = await _append_to_queue(conn, to, [r[1] for r in ordered])
                for row, qid in zip(ordered, qids, strict=True):
                    entries.append(event_from_row(tuple(row)[1:], qid=qid))
            moved = [e.event_id for e in entries]
            await conn.execute(INSERT_ATTEMPT, *record_row(replace(line, event_ids=moved)))
            await conn.execute(INSERT_ATTEMPT, *record_row(replace(to_line, event_ids=moved)))
            await conn.execute(
                "INSERT INTO webhooks(webhook, retry) VALUES ($1, $2::jsonb) "
                "ON CONFLICT (webhook) DO UPDATE SET retry = EXCLUDED.retry",
                webhook, retry_to_json(retry),
            )  # fmt: skip
            return entries

        return await self._db.ordered(op)

    async def requeue(self, webhook: str, event_ids: Sequence[str], record: AttemptRecord) -> list[QueuedEvent]:
        async def op(conn: Any) -> list[QueuedEvent]:
            await self._guard(conn, webhook)
            found = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM unnest($1::text[]) WITH ORDINALITY t(id, o) "
                "JOIN events e ON e.event_id = t.id ORDER BY t.o",
                texts(event_ids),
            )
            entries: list[QueuedEvent] = []
            if found:
                self._db.touch([webhook])
                qids = await _append_to_queue(conn, webhook, [r[0] for r in found])
                for row, qid in zip(found, qids, strict=True):
                    entries.append(event_from_row(row, qid=qid))
            await conn.execute(INSERT_ATTEMPT, *record_row(record))
            return entries

        return await self._db.ordered(op)


async def _append_to_queue(conn: Any, webhook: str, seqs: list[int]) -> list[int]:
    """Queue ``seqs`` at ``webhook``'s tail in this order; their new qids, ascending (as the rows were inserted)."""
    rows = await conn.fetch(
        "INSERT INTO queue(webhook, seq) SELECT $1, s FROM unnest($2::bigint[]) WITH ORDINALITY t(s, o) "
        "ORDER BY o RETURNING qid",
        webhook, seqs,
    )  # fmt: skip
    return sorted(int(r[0]) for r in rows)


class _PgLog(PgBase):
    async def log(self, record: AttemptRecord) -> None:
        await self._db.run(lambda conn: conn.execute(INSERT_ATTEMPT, *record_row(record)), "log")

    async def attempts(self, webhook: str, query: AttemptQuery) -> list[AttemptRecord]:
        clauses, params = attempt_filters(webhook, query, lambda n: f"${n}")
        params.append(_limit(query.limit))
        sql = f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ${len(params)}"
        rows = await self._db.run(lambda conn: conn.fetch(sql, *params))
        return [attempt_from_row(r) for r in rows]

    async def events_by_id(self, event_ids: Sequence[str]) -> list[QueuedEvent]:
        if not event_ids:
            return []
        rows = await self._db.run(
            lambda conn: conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_id = ANY($1::text[]) ORDER BY e.seq",
                texts(event_ids),
            )
        )
        return [event_from_row(r) for r in rows]

    async def routed_events(self, webhook: str, event_ids: Sequence[str]) -> list[QueuedEvent]:
        if not event_ids:
            return []
        # One statement, one snapshot: an entry that leaves the queue mid-read is seen where it went. A log line
        # older than the event names an earlier event of the same id (pruned, then accepted again): no routing.
        rows = await self._db.run(
            lambda conn: conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_id = ANY($2::text[]) AND ("
                " EXISTS (SELECT 1 FROM queue q WHERE q.webhook = $1 AND q.seq = e.seq)"
                " OR EXISTS (SELECT 1 FROM dead_letters d WHERE d.webhook = $1 AND d.seq = e.seq)"
                " OR EXISTS (SELECT 1 FROM attempts a WHERE a.webhook = $1 AND a.outcome <> $3"
                "   AND a.started_at >= e.received_at AND e.event_id = ANY(a.event_ids))"
                ") ORDER BY e.seq",
                webhook, texts(list(dict.fromkeys(event_ids))), AttemptOutcome.TEST.value,
            )
        )  # fmt: skip
        return [event_from_row(r) for r in rows]

    async def delivered_events(
        self, webhook: str, since: float | None, until: float | None, limit: int
    ) -> list[QueuedEvent]:
        low = since if since is not None else 0.0
        high = until if until is not None else float("inf")
        # An event is attempted after it was accepted, so attempts before ``since`` cannot hold one of them.
        rows = await self._db.run(
            lambda conn: conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events e "
                "WHERE e.received_at >= $1 AND e.received_at < $2 AND e.event_id IN ("
                "  SELECT unnest(a.event_ids) FROM attempts a"
                "  WHERE a.webhook = $3 AND a.outcome = ANY($4::text[]) AND a.started_at >= $1) "
                "ORDER BY e.seq LIMIT $5",
                low, high, webhook, [AttemptOutcome.DELIVERED.value, AttemptOutcome.SKIPPED.value], _limit(limit),
            )
        )  # fmt: skip
        return [event_from_row(r) for r in rows]


class PostgresStore(PgIntake, _PgLanes, _PgLog, _PgMaintenance, PgUnrouted, PgLeases):
    """Store protocol on a PostgreSQL database, shareable by several operator replicas. ``dsn`` is a libpq URL or
    keyword string (its password never appears in a message); ``clock`` stamps accepted events (tests pin it)."""

    @property
    def commits(self) -> int:
        """Ordered group commits (enqueue, requeue) so far: how well concurrent posts group."""
        return self._db.commits

    @property
    def migrated(self) -> list[int]:
        """The schema migrations this instance applied when it opened (empty: another replica had)."""
        return list(self._db.migrated)


if TYPE_CHECKING:  # mypy proves the whole protocol is implemented, and each role class its own role
    _conforms: type[Store] = PostgresStore
    _roles: tuple[type[IntakeStore], type[LaneStore], type[LogStore], type[MaintenanceStore]] = (
        PgIntake, _PgLanes, _PgLog, _PgMaintenance)  # fmt: skip
