"""Leases, liveness and fencing (``LeaseStore``) for ``SqliteStore``, by the store's own clock.

SQLite is one process, so there is never another replica to share with; the tables exist so that the contract
holds exactly as on PostgreSQL (two "replicas" in one store behave as two on one database, see
``store.memory_leases`` for the rules) and so that a fence set on a SQLite store is checked in the same
transaction as the lane write it guards, like PostgreSQL's. Lease writes are bookkeeping (``durable=False``): a
power cut that rolls one back ends the process that held it anyway.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from webhook_operator.store.base import Fence, Lease, Replica
from webhook_operator.store.memory_leases import lease_lost

if TYPE_CHECKING:  # sqlite_commit imports sqlite_schema, which imports this module's SCHEMA
    from webhook_operator.store.sqlite_commit import GroupCommit

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS replicas (
    replica_id TEXT PRIMARY KEY,
    heartbeat_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    address TEXT
);
CREATE TABLE IF NOT EXISTS leases (
    webhook TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    token INTEGER NOT NULL UNIQUE,
    expires_at REAL NOT NULL
);
-- The last token handed out: never reused, even if lease rows went away.
CREATE TABLE IF NOT EXISTS lease_tokens (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
"""

_HOLDS = "SELECT 1 FROM leases WHERE webhook = ? AND owner = ? AND token = ? AND expires_at > ?"


class _Host(Protocol):
    """What the lease role needs from ``store.sqlite._SqliteBase``."""

    _db: GroupCommit
    _fence: Fence | None

    @property
    def _clock(self) -> Callable[[], float]: ...


def _no_check(conn: sqlite3.Connection) -> None:
    pass


def guard(fence: Fence | None, webhook: str, clock: Callable[[], float]) -> Callable[[sqlite3.Connection], None]:
    """The fence check a lane write runs first in its transaction (raising ``LeaseLost`` rolls its savepoint
    back: nothing is written). The token is read now, on the event loop, where the fence is kept; no fence: a
    no-op."""
    if fence is None:
        return _no_check
    replica, token = fence.replica, fence.token(webhook)

    def check(conn: sqlite3.Connection) -> None:
        if token is None or conn.execute(_HOLDS, (webhook, replica, token, clock())).fetchone() is None:
            raise lease_lost(webhook, replica, token)

    return check


async def lane_write(store: _Host, webhook: str, op: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
    """``op`` as one operation of the group commit, after the fence check when a fence is set."""
    check = guard(store._fence, webhook, store._clock)
    if check is _no_check:
        return await store._db.write(op, durable=durable)

    def fenced(conn: sqlite3.Connection) -> T:
        check(conn)
        return op(conn)

    return await store._db.write(fenced, durable=durable)


def _next_token(conn: sqlite3.Connection) -> int:
    conn.execute("INSERT INTO lease_tokens(id, last) VALUES (1, 1) ON CONFLICT(id) DO UPDATE SET last = last + 1")
    return int(conn.execute("SELECT last FROM lease_tokens WHERE id = 1").fetchone()[0])


class SqliteLeases:
    """``LeaseStore`` for ``SqliteStore``; each call is one operation of the group commit (or one read)."""

    def set_fence(self: _Host, fence: Fence | None) -> None:
        self._fence = fence

    async def heartbeat(self: _Host, replica: str, ttl: float, address: str | None = None) -> list[Replica]:
        now = self._clock()

        def op(conn: sqlite3.Connection) -> list[Replica]:
            conn.execute(
                "INSERT INTO replicas(replica_id, heartbeat_at, expires_at, address) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(replica_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,"
                " expires_at = excluded.expires_at, address = excluded.address",
                (replica, now, now + ttl, address),
            )
            conn.execute("DELETE FROM replicas WHERE expires_at < ?", (now - 86400,))  # died without ``leave``
            rows = conn.execute(
                "SELECT replica_id, heartbeat_at, address FROM replicas WHERE expires_at > ? ORDER BY replica_id",
                (now,),
            ).fetchall()
            return [Replica(r[0], r[1], r[2]) for r in rows]

        return await self._db.write(op, durable=False)

    async def leave(self: _Host, replica: str) -> None:
        now = self._clock()

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM replicas WHERE replica_id = ?", (replica,))
            conn.execute("UPDATE leases SET expires_at = ? WHERE owner = ? AND expires_at > ?", (now, replica, now))

        await self._db.write(op, durable=False)

    async def acquire(self: _Host, replica: str, webhooks: Sequence[str], ttl: float) -> dict[str, int]:
        now, keys = self._clock(), list(dict.fromkeys(webhooks))  # a copy: the writer thread reads it

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            held: dict[str, int] = {}
            for webhook in keys:
                row = conn.execute(
                    "SELECT owner, token, expires_at FROM leases WHERE webhook = ?", (webhook,)
                ).fetchone()
                if row is not None and now < row[2]:
                    if row[0] != replica:
                        continue  # someone else's and live
                    token = int(row[1])  # a renewal keeps its token
                else:
                    token = _next_token(conn)  # free or expired: a new acquisition
                conn.execute(
                    "INSERT INTO leases(webhook, owner, token, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT(webhook) "
                    "DO UPDATE SET owner = excluded.owner, token = excluded.token, expires_at = excluded.expires_at",
                    (webhook, replica, token, now + ttl),
                )
                held[webhook] = token
            return held

        return await self._db.write(op, durable=False) if keys else {}

    async def release(self: _Host, replica: str, leases: Mapping[str, int]) -> None:
        now = self._clock()
        rows = [(now, webhook, replica, token, now) for webhook, token in leases.items()]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE leases SET expires_at = ? WHERE webhook = ? AND owner = ? AND token = ? AND expires_at > ?",
                rows,
            )

        if rows:
            await self._db.write(op, durable=False)

    async def valid(self: _Host, replica: str, leases: Mapping[str, int]) -> set[str]:
        now, asked = self._clock(), list(leases.items())  # a copy: the reader thread reads it

        def fn(conn: sqlite3.Connection) -> set[str]:
            return {w for w, t in asked if conn.execute(_HOLDS, (w, replica, t, now)).fetchone() is not None}

        return await self._db.read(fn) if asked else set()

    async def leases(self: _Host) -> list[Lease]:
        def fn(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute("SELECT webhook, owner, token, expires_at FROM leases ORDER BY webhook").fetchall()

        return [Lease(r[0], r[1], int(r[2]), r[3]) for r in await self._db.read(fn)]

    async def watch_queues(self, callback: Callable[[Sequence[str] | None], None]) -> None:
        """One process has no other replica to hear from: nothing is kept and ``callback`` is never called."""
