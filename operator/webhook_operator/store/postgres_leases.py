"""Leases, liveness and fencing (``LeaseStore``) on PostgreSQL: the rows that let several replicas share the work.

Tables (migration 2): ``replicas`` (one row per live replica: heartbeat and time to live), ``leases`` (one row per
webhook: owner, fencing token, expiry) and the sequence ``lease_tokens``. Every time is the database server's clock
(``clock_timestamp()``, read when the row is actually touched, after any lock wait), never a replica's, so replicas'
clocks need not agree; a lease is live while that clock is before its ``expires_at``.

Cost is per call, not per webhook: ``acquire`` of 3,000 webhooks is one ``UPDATE … WHERE webhook = ANY($1)``
(renewals) plus, only for those it did not already hold, one ``INSERT … SELECT unnest … ON CONFLICT DO UPDATE``
(takeovers and new leases, in a transaction of its own); ``valid`` and ``release`` are one statement each.

Fencing. With a fence set, every lane write checks, in its own transaction, that the lease row names the fence's
replica and token and is live, and locks the row ``FOR KEY SHARE`` until it commits: the one-statement writes
(``complete``, ``fail``, ``save_retry_state``, ``skip``, ``dead_letter``) through ``fenced_sql`` (the check is a
CTE of the same statement: still one round trip), the ordered ones (``requeue``, ``hand_over``) through ``GUARD``
inside the group commit's transaction. ``token`` is a UNIQUE column, so a takeover (``ON CONFLICT DO UPDATE SET
token = …``) needs a ``FOR UPDATE`` lock and waits for that commit, then re-reads the row: a write that passed its
check always commits before the takeover does, and a write checked after a takeover committed sees the new owner
and raises ``LeaseLost`` with nothing written. A renewal or release leaves the token alone (a ``FOR NO KEY
UPDATE`` lock), so it never waits for lane writes, nor they for it. The exact window: a write whose check passed
at time t (lease live at t by the database clock) may commit slightly after the lease's expiry (the rest of its
statement or group, and the commit), but never after another replica's acquisition of that lease.

Takeovers first take the queue lock (``QUEUE_LOCK``), which every ordered group commit holds for its whole
transaction: a group can check several webhooks' leases one after another and a takeover locks several lease
rows, so without it the two could each wait for a row the other holds (a deadlock PostgreSQL would break by
failing one of them). It also means a takeover never overlaps an ordered group at all.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from webhook_operator.store.base import Fence, Lease, Replica
from webhook_operator.store.memory_leases import lease_lost
from webhook_operator.store.postgres_pool import PgBase
from webhook_operator.store.postgres_schema import QUEUE_LOCK

T = TypeVar("T")

#: The database server's clock in epoch seconds, as the store's other times are kept.
NOW = "extract(epoch from clock_timestamp())::float8"

#: What ``webhook_operator_fence`` raises when the lease is not the writer's (a class of our own: never a driver's).
LEASE_LOST_STATE = "WO001"

#: The fence check of a lane write that is several statements (``requeue``, ``hand_over``, in the ordered group
#: commit's transaction): a row back means the lease is the caller's, locked until commit.
GUARD = f"SELECT 1 FROM leases WHERE webhook = $1 AND owner = $2 AND token = $3 AND expires_at > {NOW} FOR KEY SHARE"

_HEARTBEAT = (
    "WITH up AS (INSERT INTO replicas(replica_id, heartbeat_at, expires_at, address)"
    f"  SELECT $1, n, n + $2, $3 FROM (SELECT {NOW} AS n) t"
    "  ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at,"
    "   expires_at = EXCLUDED.expires_at, address = EXCLUDED.address"
    "  RETURNING replica_id, heartbeat_at, address),"
    # Rows of replicas that died without ``leave`` (a new pod name each time) go after a day.
    " gone AS (DELETE FROM replicas WHERE expires_at < (SELECT heartbeat_at FROM up) - 86400)"
    " SELECT replica_id, heartbeat_at, address FROM up UNION ALL"
    " SELECT replica_id, heartbeat_at, address FROM replicas"
    "  WHERE replica_id <> $1 AND expires_at > (SELECT heartbeat_at FROM up)"
)

_LEAVE = (
    "WITH r AS (DELETE FROM replicas WHERE replica_id = $1)"
    f" UPDATE leases l SET expires_at = t.n FROM (SELECT {NOW} AS n) t WHERE l.owner = $1 AND l.expires_at > t.n"
)

_RENEW = (
    f"UPDATE leases l SET expires_at = t.n + $3 FROM (SELECT {NOW} AS n) t"
    " WHERE l.webhook = ANY($1::text[]) AND l.owner = $2 AND l.expires_at > t.n RETURNING l.webhook, l.token"
)

# Free, expired or new: a fresh token. Rows live at the statement's snapshot are left out before they are locked
# (an ON CONFLICT row is locked even when its WHERE then refuses it); the WHERE re-checks after any lock wait.
_TAKE = (
    "INSERT INTO leases(webhook, owner, token, expires_at)"
    f" SELECT k, $2, nextval('lease_tokens'), {NOW} + $3 FROM unnest($1::text[]) k"
    f" WHERE NOT EXISTS (SELECT 1 FROM leases l WHERE l.webhook = k AND l.expires_at > {NOW}) ORDER BY k"
    " ON CONFLICT (webhook) DO UPDATE SET owner = EXCLUDED.owner, token = EXCLUDED.token,"
    f"  expires_at = EXCLUDED.expires_at WHERE leases.expires_at <= {NOW}"
    " RETURNING webhook, token"
)

_RELEASE = (
    f"UPDATE leases l SET expires_at = t.n FROM (SELECT {NOW} AS n) t,"
    " unnest($2::text[], $3::bigint[]) r(w, tok)"
    " WHERE l.webhook = r.w AND l.token = r.tok AND l.owner = $1 AND l.expires_at > t.n"
)

_VALID = (
    "SELECT l.webhook FROM leases l JOIN unnest($2::text[], $3::bigint[]) r(w, tok)"
    f" ON l.webhook = r.w AND l.token = r.tok WHERE l.owner = $1 AND l.expires_at > {NOW}"
)


class PgFencing(PgBase):
    """The fence and the guarded lane write; ``store.postgres``'s lane role builds on it."""

    def set_fence(self, fence: Fence | None) -> None:
        self._fence = fence

    async def _guard(self, conn: Any, webhook: str) -> None:
        """Inside the caller's transaction: raise ``LeaseLost`` unless ``webhook``'s lease is the fence's (no fence:
        nothing to check, no statement sent)."""
        fence = self._fence
        if fence is None:
            return
        token = fence.token(webhook)
        if token is None or await conn.fetchval(GUARD, webhook, fence.replica, token) is None:
            raise lease_lost(webhook, fence.replica, token)

    async def _lane_write(self, webhook: str, fn: Callable[[Any], Awaitable[T]], what: str) -> T:
        """Run the one-statement lane write ``fn`` (``lambda conn: conn.execute(sql, *args)``): as is without a
        fence, the very statement and round trip there were before leases existed; with one, ``fn`` is handed a
        connection whose ``execute`` runs ``fenced_sql(sql)`` instead: the same statement with the fence check as
        its first CTE, still one statement and one round trip, all of it undone if the check fails."""
        fence = self._fence
        if fence is None:
            return await self._db.run(fn, what)
        replica, token = fence.replica, fence.token(webhook)
        if token is None:
            raise lease_lost(webhook, replica, token)
        try:
            return await self._db.run(lambda conn: fn(_FencedConnection(conn, webhook, replica, token)), what)
        except asyncpg.PostgresError as exc:
            if getattr(exc, "sqlstate", None) == LEASE_LOST_STATE:
                raise lease_lost(webhook, replica, token) from None
            raise


class _FencedConnection:
    """A connection for one fenced lane write: ``execute`` guards the statement (``fenced_sql``). It offers nothing
    else, so a lane write that needs more than one ``execute`` cannot go unguarded by accident."""

    def __init__(self, conn: Any, webhook: str, replica: str, token: int) -> None:
        self._conn, self._fence_args = conn, (webhook, replica, token)

    async def execute(self, sql: str, *args: Any) -> Any:
        return await self._conn.execute(fenced_sql(sql, len(args)), *args, *self._fence_args)


@functools.lru_cache(maxsize=64)
def fenced_sql(sql: str, nargs: int) -> str:
    """``sql`` with the fence check (``webhook_operator_fence`` of migration 2, on parameters ``nargs`` + 1..3:
    webhook, replica, token) as its first CTE. A data-modifying CTE always runs, exactly once, whether or not
    anything reads it, so the check cannot be skipped; it inserts nothing (the function returns true or raises
    ``WO001``, failing the whole statement). Where in the statement it runs does not matter: it locks the row
    until commit, so a takeover either committed before it (the check fails, nothing is written) or waits for the
    commit; and nothing of the statement is visible to anyone before that commit."""
    n = nargs
    check = (
        "wo_fence AS (INSERT INTO leases(webhook, owner, token, expires_at) SELECT NULL, NULL, NULL, NULL"
        f" WHERE NOT webhook_operator_fence(${n + 1}, ${n + 2}, ${n + 3}::bigint))"
    )
    head, _, rest = sql.partition("WITH ")
    return f"WITH {check}, {rest}" if not head and rest else f"WITH {check} {sql}"


class PgLeases(PgBase):
    async def heartbeat(self, replica: str, ttl: float, address: str | None = None) -> list[Replica]:
        rows = await self._db.run(lambda conn: conn.fetch(_HEARTBEAT, replica, ttl, address), "heartbeat")
        return sorted((Replica(r[0], r[1], r[2]) for r in rows), key=lambda r: r.replica_id)

    async def leave(self, replica: str) -> None:
        await self._db.run(lambda conn: conn.execute(_LEAVE, replica), "leave")

    async def acquire(self, replica: str, webhooks: Sequence[str], ttl: float) -> dict[str, int]:
        keys = sorted(set(webhooks))  # one lock order for every statement that locks many lease rows
        if not keys:
            return {}
        renewed = await self._db.run(lambda conn: conn.fetch(_RENEW, keys, replica, ttl), "renew leases")
        held = {r[0]: int(r[1]) for r in renewed}
        rest = [k for k in keys if k not in held]
        if rest:

            async def take(conn: Any) -> list[Any]:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", QUEUE_LOCK)
                return list(await conn.fetch(_TAKE, rest, replica, ttl))

            taken = await self._db.transaction(take, "acquire leases")
            held.update((r[0], int(r[1])) for r in taken)
        return held

    async def release(self, replica: str, leases: Mapping[str, int]) -> None:
        if leases:
            keys = list(leases)
            await self._db.run(
                lambda conn: conn.execute(_RELEASE, replica, keys, [leases[k] for k in keys]), "release leases"
            )

    async def valid(self, replica: str, leases: Mapping[str, int]) -> set[str]:
        if not leases:
            return set()
        keys = list(leases)
        rows = await self._db.run(lambda conn: conn.fetch(_VALID, replica, keys, [leases[k] for k in keys]))
        return {r[0] for r in rows}

    async def leases(self) -> list[Lease]:
        rows = await self._db.run(
            lambda conn: conn.fetch('SELECT webhook, owner, token, expires_at FROM leases ORDER BY webhook COLLATE "C"')
        )
        return [Lease(r[0], r[1], int(r[2]), r[3]) for r in rows]

    async def watch_queues(self, callback: Callable[[Sequence[str] | None], None]) -> None:
        await self._db.watch(callback)
