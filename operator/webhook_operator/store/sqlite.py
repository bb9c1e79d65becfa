"""SQLite store: the embedded default, WAL mode with group commit.

sqlite3 blocks, so all writes run on one dedicated thread with one connection, and reads on another (WAL lets
readers proceed while the writer commits). Writes from concurrent callers are gathered into one transaction and
one fsync ("group commit"): under load, a thousand enqueues cost one commit, which is what makes per-event
durability affordable. Each operation runs in its own SAVEPOINT, so one failing operation (a bad row) does not fail
the others in its group; a failing COMMIT (disk full, I/O error) fails them all with StoreUnavailable, and nothing
was acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from webhook_operator.store.base import (
    AttemptOutcome,
    AttemptQuery,
    AttemptRecord,
    Counters,
    EnqueueResult,
    QueuedEvent,
    RetryState,
    RoutedEvent,
    StoreUnavailable,
)
from webhook_operator.store.sqlite_schema import (
    INSERT_ATTEMPT,
    SCHEMA,
    UPSERT_WEBHOOK,
    attempt_from_row,
    connect,
    qmarks,
    record_row,
)

T = TypeVar("T")
_Op = Callable[[sqlite3.Connection], Any]


class SqliteStore:
    """Store protocol on one SQLite file. ``synchronous=FULL`` (default) makes every commit survive power loss;
    ``NORMAL`` survives process crashes only and is faster."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous not in {"FULL", "NORMAL", "EXTRA"}:
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = str(path)
        self._synchronous = synchronous
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="store-reader")
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self._pending: list[tuple[_Op, asyncio.Future[Any], bool]] = []
        self._wakeup: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._busy = False
        self._current_sync = synchronous
        self.commits = 0  # observable for tests and benchmarks (group commit efficiency)

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)

        def setup() -> sqlite3.Connection:
            conn = connect(self.path, self._synchronous)
            conn.executescript(SCHEMA)
            return conn

        try:
            self._w = await loop.run_in_executor(self._writer, setup)
            self._r = await loop.run_in_executor(self._reader, connect, self.path, self._synchronous)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        self._wakeup = asyncio.Event()
        self._flusher = asyncio.create_task(self._flush_loop(), name="store-group-commit")

    async def close(self) -> None:
        if self._flusher is not None:
            while self._pending or self._busy:  # noqa: ASYNC110 - shutdown only: let queued writes commit
                await asyncio.sleep(0.001)
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        loop = asyncio.get_running_loop()
        if self._w is not None:
            await loop.run_in_executor(self._writer, self._w.close)
        if self._r is not None:
            await loop.run_in_executor(self._reader, self._r.close)
        self._w = self._r = None
        self._wakeup = None  # later writes fail fast with StoreUnavailable instead of waiting forever
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    # -- group commit ----------------------------------------------------------------------------------------

    async def _write(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Queue ``op`` for the next group commit. ``durable=False`` marks bookkeeping whose loss on power failure
        costs at most a repeated delivery (completions, the log): a group made only of such ops commits without
        fsync, while any acknowledged write in the group makes the whole group (and the WAL before it) durable."""
        if self._wakeup is None:
            raise StoreUnavailable("store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future, durable))
        self._wakeup.set()
        return await future

    async def _flush_loop(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            self._busy = True
            try:
                durable = any(d for _, _, d in batch)
                results = await loop.run_in_executor(self._writer, self._run_batch, [op for op, _, _ in batch], durable)
            except sqlite3.Error as exc:
                error = StoreUnavailable(f"SQLite commit failed: {exc}")
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            finally:
                self._busy = False
            for (_, future, _), (ok, value) in zip(batch, results, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _run_batch(self, ops: list[_Op], durable: bool) -> list[tuple[bool, Any]]:
        conn = self._w
        assert conn is not None
        results: list[tuple[bool, Any]] = []
        # WAL + NORMAL: no fsync per commit, never corrupt; a power cut may roll back the latest such commits.
        wanted = self._synchronous if durable else "NORMAL"
        if wanted != self._current_sync:  # only allowed outside a transaction
            conn.execute(f"PRAGMA synchronous={wanted}")
            self._current_sync = wanted
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                conn.execute("SAVEPOINT op")
                try:
                    results.append((True, op(conn)))
                    conn.execute("RELEASE op")
                except Exception as exc:  # one bad operation must not fail its whole group
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
                        exc = StoreUnavailable(f"SQLite write failed: {exc}")  # disk full, I/O error: not the caller's
                    results.append((False, exc))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        return results

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._r is None:
            raise StoreUnavailable("store is not open")
        r = self._r
        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader, fn, r)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

    # -- writes ----------------------------------------------------------------------------------------------

    async def enqueue(self, events: Sequence[RoutedEvent]) -> EnqueueResult:
        now = time.time()

        def op(conn: sqlite3.Connection) -> EnqueueResult:
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
                for webhook in event.webhooks:
                    qcur = conn.execute("INSERT INTO queue(webhook, seq) VALUES (?,?)", (webhook, seq))
                    queued.setdefault(webhook, []).append(
                        QueuedEvent(int(qcur.lastrowid or 0), seq, event.event_id, event.body, now)
                    )
            return EnqueueResult(seqs, queued)

        return await self._write(op)

    async def complete(self, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(f"DELETE FROM queue WHERE qid IN ({qmarks(len(qids))})", list(qids))
            conn.execute(INSERT_ATTEMPT, record_row(record))
            conn.execute(UPSERT_WEBHOOK, (webhook,))
            conn.execute(
                "UPDATE webhooks SET delivered = delivered + ?, last_success_at = ?, retry = NULL WHERE webhook = ?",
                (len(qids), record.started_at + record.duration_ms / 1000, webhook),
            )

        await self._write(op, durable=False)

    async def fail(self, webhook: str, record: AttemptRecord, retry: RetryState) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(INSERT_ATTEMPT, record_row(record))
            conn.execute(UPSERT_WEBHOOK, (webhook,))
            conn.execute(
                "UPDATE webhooks SET failed = failed + 1, retry = ? WHERE webhook = ?",
                (json.dumps(asdict(retry)), webhook),
            )

        await self._write(op, durable=False)

    async def skip(self, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
        def op(conn: sqlite3.Connection) -> None:
            cur = conn.execute(INSERT_ATTEMPT, record_row(record))
            marks = qmarks(len(qids))
            conn.execute(
                "INSERT INTO dead_letters(webhook, seq, event_id, skipped_at, attempt_id) "
                f"SELECT q.webhook, q.seq, e.event_id, ?, ? FROM queue q JOIN events e ON e.seq = q.seq "
                f"WHERE q.qid IN ({marks})",
                [record.started_at, cur.lastrowid, *qids],
            )
            conn.execute(f"DELETE FROM queue WHERE qid IN ({marks})", list(qids))
            conn.execute(UPSERT_WEBHOOK, (webhook,))
            conn.execute("UPDATE webhooks SET retry = NULL WHERE webhook = ?", (webhook,))

        await self._write(op)

    async def requeue(self, webhook: str, event_ids: Sequence[str], record: AttemptRecord) -> list[QueuedEvent]:
        def op(conn: sqlite3.Connection) -> list[QueuedEvent]:
            entries: list[QueuedEvent] = []
            for event_id in event_ids:  # keep the caller's order
                row = conn.execute(
                    "SELECT seq, body, received_at FROM events WHERE event_id = ?", (event_id,)
                ).fetchone()
                if row is None:
                    continue
                cur = conn.execute("INSERT INTO queue(webhook, seq) VALUES (?,?)", (webhook, row[0]))
                entries.append(QueuedEvent(int(cur.lastrowid or 0), row[0], event_id, bytes(row[1]), row[2]))
            conn.execute(INSERT_ATTEMPT, record_row(record))
            return entries

        return await self._write(op)

    async def log(self, record: AttemptRecord) -> None:
        await self._write(lambda conn: conn.execute(INSERT_ATTEMPT, record_row(record)), durable=False)

    async def save_retry_state(self, webhook: str, retry: RetryState) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(UPSERT_WEBHOOK, (webhook,))
            conn.execute("UPDATE webhooks SET retry = ? WHERE webhook = ?", (json.dumps(asdict(retry)), webhook))

        await self._write(op)

    async def purge(self, webhook: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM queue WHERE webhook = ?", (webhook,))
            conn.execute("DELETE FROM webhooks WHERE webhook = ?", (webhook,))

        await self._write(op)

    async def prune(self, older_than: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            removed = conn.execute(
                "DELETE FROM events WHERE received_at < ? AND seq NOT IN (SELECT seq FROM queue)", (older_than,)
            ).rowcount
            conn.execute("DELETE FROM attempts WHERE started_at < ?", (older_than,))
            conn.execute("DELETE FROM dead_letters WHERE skipped_at < ?", (older_than,))
            return int(removed)

        return await self._write(op)

    async def claim(self, webhook: str, owner: str, ttl: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            now = time.time()
            conn.execute(UPSERT_WEBHOOK, (webhook,))
            cur = conn.execute(
                "UPDATE webhooks SET lease_owner = ?, lease_expires = ? WHERE webhook = ? AND "
                "(lease_owner IS NULL OR lease_owner = ? OR lease_expires < ?)",
                (owner, now + ttl, webhook, owner, now),
            )
            return cur.rowcount == 1

        return await self._write(op)

    async def release(self, webhook: str, owner: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "UPDATE webhooks SET lease_owner = NULL, lease_expires = NULL WHERE webhook = ? AND lease_owner = ?",
                (webhook, owner),
            )
        )

    # -- reads -----------------------------------------------------------------------------------------------

    async def pending(self, webhook: str, after_qid: int = 0, limit: int = 1000) -> list[QueuedEvent]:
        def fn(conn: sqlite3.Connection) -> list[QueuedEvent]:
            rows = conn.execute(
                "SELECT q.qid, q.seq, e.event_id, e.body, e.received_at FROM queue q JOIN events e ON e.seq = q.seq "
                "WHERE q.webhook = ? AND q.qid > ? ORDER BY q.qid LIMIT ?",
                (webhook, after_qid, limit),
            ).fetchall()
            return [QueuedEvent(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

        return await self._read(fn)

    async def pending_count(self, webhook: str) -> int:
        return await self._read(
            lambda conn: int(conn.execute("SELECT COUNT(*) FROM queue WHERE webhook = ?", (webhook,)).fetchone()[0])
        )

    async def webhook_keys(self) -> list[str]:
        """Every webhook the store holds anything for (queue, counters, retry state)."""
        return await self._read(
            lambda conn: [r[0] for r in conn.execute(
                "SELECT webhook FROM queue UNION SELECT webhook FROM webhooks ORDER BY 1")]
        )  # fmt: skip

    async def webhooks_with_pending(self) -> list[str]:
        return await self._read(
            lambda conn: [r[0] for r in conn.execute("SELECT DISTINCT webhook FROM queue ORDER BY webhook")]
        )

    async def retry_state(self, webhook: str) -> RetryState:
        def fn(conn: sqlite3.Connection) -> RetryState:
            row = conn.execute("SELECT retry FROM webhooks WHERE webhook = ?", (webhook,)).fetchone()
            if row is None or row[0] is None:
                return RetryState()
            return RetryState(**json.loads(row[0]))

        return await self._read(fn)

    async def counters(self, webhook: str) -> Counters:
        def fn(conn: sqlite3.Connection) -> Counters:
            row = conn.execute(
                "SELECT delivered, failed, last_success_at FROM webhooks WHERE webhook = ?", (webhook,)
            ).fetchone()
            return Counters() if row is None else Counters(int(row[0]), int(row[1]), row[2])

        return await self._read(fn)

    async def attempts(self, webhook: str, query: AttemptQuery) -> list[AttemptRecord]:
        clauses, params = ["webhook = ?"], [webhook]
        for sql, value in (
            ("outcome = ?", query.outcome.value if query.outcome else None),
            ("started_at >= ?", query.since),
            ("started_at < ?", query.until),
            ("id > ?", query.after_id),
        ):
            if value is not None:
                clauses.append(sql)
                params.append(value)  # type: ignore[arg-type]

        def fn(conn: sqlite3.Connection) -> list[AttemptRecord]:
            rows = conn.execute(
                "SELECT id, webhook, delivery_id, event_ids, attempt, started_at, duration_ms, outcome, status_code,"
                f" error, response_body, note FROM attempts WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
                [*params, query.limit],
            ).fetchall()
            return [attempt_from_row(r) for r in rows]

        return await self._read(fn)

    async def events_between(self, since: float | None, until: float | None, limit: int) -> list[QueuedEvent]:
        def fn(conn: sqlite3.Connection) -> list[QueuedEvent]:
            rows = conn.execute(
                "SELECT seq, event_id, body, received_at FROM events WHERE received_at >= ? AND received_at < ? "
                "ORDER BY seq "
                "LIMIT ?",
                (since if since is not None else 0.0, until if until is not None else float("inf"), limit),
            ).fetchall()
            return [QueuedEvent(0, r[0], r[1], bytes(r[2]), r[3]) for r in rows]

        return await self._read(fn)

    async def events_by_id(self, event_ids: Sequence[str]) -> list[QueuedEvent]:
        def fn(conn: sqlite3.Connection) -> list[QueuedEvent]:
            rows = conn.execute(
                "SELECT seq, event_id, body, received_at FROM events "
                f"WHERE event_id IN ({qmarks(len(event_ids))}) ORDER BY seq",
                list(event_ids),
            ).fetchall()
            return [QueuedEvent(0, r[0], r[1], bytes(r[2]), r[3]) for r in rows]

        return await self._read(fn) if event_ids else []

    async def delivered_events(
        self, webhook: str, since: float | None, until: float | None, limit: int
    ) -> list[QueuedEvent]:
        low = since if since is not None else 0.0
        high = until if until is not None else float("inf")

        def fn(conn: sqlite3.Connection) -> list[QueuedEvent]:
            # An event is attempted after it was accepted, so attempts before ``since`` cannot hold one of them.
            rows = conn.execute(
                "SELECT e.seq, e.event_id, e.body, e.received_at FROM events e "
                "WHERE e.received_at >= ? AND e.received_at < ? AND e.event_id IN ("
                "  SELECT j.value FROM attempts a, json_each(a.event_ids) j"
                "  WHERE a.webhook = ? AND a.outcome IN (?, ?) AND a.started_at >= ?) "
                "ORDER BY e.seq LIMIT ?",
                (low, high, webhook, AttemptOutcome.DELIVERED.value, AttemptOutcome.SKIPPED.value, low, limit),
            ).fetchall()
            return [QueuedEvent(0, r[0], r[1], bytes(r[2]), r[3]) for r in rows]

        return await self._read(fn)
