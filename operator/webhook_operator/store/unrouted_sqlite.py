"""``UnroutedStore`` for ``SqliteStore`` (see ``store.unrouted``): the ``unrouted`` table, keyed by the event's seq.

``enqueue`` (``store.sqlite``) asks ``waiting`` and calls ``park`` inside its own write, so the check and the mark
are one transaction; routing is one group-commit operation per chunk (the entries and the cleared marks together).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Protocol

from webhook_operator.store.base import EnqueueResult, QueuedEvent
from webhook_operator.store.sqlite_commit import GroupCommit
from webhook_operator.store.sqlite_schema import event_from_row
from webhook_operator.store.unrouted import CHUNK


def waiting(conn: sqlite3.Connection) -> bool:
    """Whether any event waits unrouted (in the caller's transaction)."""
    return conn.execute("SELECT 1 FROM unrouted LIMIT 1").fetchone() is not None


def park(conn: sqlite3.Connection, seq: int) -> None:
    conn.execute("INSERT INTO unrouted(seq) VALUES (?)", (seq,))


class _UnroutedHost(Protocol):
    """What ``SqliteUnrouted`` needs from the store it is mixed into (``store.sqlite._SqliteBase``)."""

    _db: GroupCommit


class SqliteUnrouted:
    async def unrouted(self: _UnroutedHost, limit: int = CHUNK) -> list[QueuedEvent]:
        def fn(conn: sqlite3.Connection) -> list[QueuedEvent]:
            rows = conn.execute(
                "SELECT e.seq, e.event_id, e.body, e.received_at FROM unrouted u JOIN events e ON e.seq = u.seq "
                "ORDER BY u.seq LIMIT ?",
                (limit,),
            ).fetchall()
            return [event_from_row(r) for r in rows]

        return await self._db.read(fn)

    async def route_unrouted(self: _UnroutedHost, routes: Sequence[tuple[int, Sequence[str]]]) -> EnqueueResult:
        def op(conn: sqlite3.Connection) -> EnqueueResult:
            seqs: list[int | None] = []
            queued: dict[str, list[QueuedEvent]] = {}
            for seq, webhooks in routes:
                if conn.execute("DELETE FROM unrouted WHERE seq = ?", (seq,)).rowcount == 0:
                    seqs.append(None)  # routed already
                    continue
                seqs.append(seq)
                row = conn.execute(
                    "SELECT seq, event_id, body, received_at FROM events WHERE seq = ?", (seq,)
                ).fetchone()
                for webhook in webhooks:
                    cur = conn.execute("INSERT INTO queue(webhook, seq) VALUES (?,?)", (webhook, seq))
                    queued.setdefault(webhook, []).append(event_from_row(row, qid=int(cur.lastrowid or 0)))
            return EnqueueResult(seqs, queued)

        return await self._db.write(op)

    async def unrouted_count(self: _UnroutedHost) -> int:
        return await self._db.read(lambda conn: int(conn.execute("SELECT COUNT(*) FROM unrouted").fetchone()[0]))
