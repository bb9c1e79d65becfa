"""SQLite schema and row mapping for ``store.sqlite``: the SQL lives here, the concurrency in ``sqlite_commit``.

The schema only ever grows by ``CREATE ... IF NOT EXISTS``, so a file written by an older version opens unchanged.
Columns a newer version stopped using stay in old files and are simply never named again: the webhooks table of
files created before the store protocol dropped queue leases still carries ``lease_owner``/``lease_expires``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from webhook_operator.store.base import AttemptOutcome, AttemptRecord, QueuedEvent
from webhook_operator.store.budget import WAL_SIZE_LIMIT
from webhook_operator.store.sqlite_leases import SCHEMA as LEASES_SCHEMA
from webhook_operator.store.unrouted import SQLITE_SCHEMA as UNROUTED_SCHEMA

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_received_at ON events(received_at);
CREATE TABLE IF NOT EXISTS queue (
    qid INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_webhook ON queue(webhook, qid);
CREATE INDEX IF NOT EXISTS queue_seq ON queue(seq);
CREATE TABLE IF NOT EXISTS webhooks (
    webhook TEXT PRIMARY KEY,
    retry TEXT,
    delivered INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    last_success_at REAL
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    event_ids TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    error TEXT,
    response_body TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS attempts_webhook ON attempts(webhook, id);
CREATE INDEX IF NOT EXISTS attempts_started ON attempts(started_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    webhook TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    skipped_at REAL NOT NULL,
    attempt_id INTEGER
);
CREATE INDEX IF NOT EXISTS dead_letters_webhook ON dead_letters(webhook, skipped_at);
CREATE INDEX IF NOT EXISTS dead_letters_seq ON dead_letters(seq);
CREATE INDEX IF NOT EXISTS dead_letters_skipped ON dead_letters(skipped_at);
"""
    + UNROUTED_SCHEMA
    + LEASES_SCHEMA
)

UPSERT_WEBHOOK = "INSERT INTO webhooks(webhook) VALUES (?) ON CONFLICT(webhook) DO NOTHING"


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    return conn


def record_row(record: AttemptRecord) -> tuple[Any, ...]:
    return (
        record.webhook,
        record.delivery_id,
        json.dumps(list(record.event_ids)),
        record.attempt,
        record.started_at,
        record.duration_ms,
        record.outcome.value,
        record.status_code,
        record.error,
        record.response_body,
        record.note,
    )


INSERT_ATTEMPT = (
    "INSERT INTO attempts(webhook, delivery_id, event_ids, attempt, started_at, duration_ms, outcome, status_code,"
    " error, response_body, note) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


def qmarks(n: int) -> str:
    return ",".join("?" * n)


def to_dead_letters(conn: sqlite3.Connection, webhook: str, qids: Sequence[int], record: AttemptRecord) -> None:
    """Queue entries → dead letters, with their log line; what ``skip`` and ``dead_letter`` share (in the caller's
    transaction)."""
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


def attempt_from_row(r: sqlite3.Row | tuple[Any, ...]) -> AttemptRecord:
    return AttemptRecord(
        id=r[0],
        webhook=r[1],
        delivery_id=r[2],
        event_ids=json.loads(r[3]),
        attempt=r[4],
        started_at=r[5],
        duration_ms=r[6],
        outcome=AttemptOutcome(r[7]),
        status_code=r[8],
        error=r[9],
        response_body=r[10],
        note=r[11],
    )


def event_from_row(r: sqlite3.Row | tuple[Any, ...], qid: int = 0) -> QueuedEvent:
    """``(seq, event_id, body, received_at)``; ``qid`` 0 for an event read outside a queue."""
    return QueuedEvent(qid, r[0], r[1], bytes(r[2]), r[3])
