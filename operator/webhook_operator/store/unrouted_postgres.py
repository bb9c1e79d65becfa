"""``UnroutedStore`` for ``PostgresStore`` (see ``store.unrouted``): the ``unrouted`` table (migration 3).

Routing a chunk runs on the ordered group commit (``postgres_pool.Pool.ordered``), whose transaction takes the queue
lock first: chunks routed by different replicas commit one after the other, each deletes only marks that are still
there (``DELETE … RETURNING``: a mark another replica cleared is skipped, so every event is routed exactly once),
and the queue entries it creates get qids after every entry committed before it, so arrival order is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from webhook_operator.store.base import EnqueueResult, QueuedEvent
from webhook_operator.store.postgres_pool import Pool
from webhook_operator.store.postgres_schema import EVENT_COLUMNS, event_from_row, text
from webhook_operator.store.unrouted import CHUNK


class _UnroutedHost(Protocol):
    """What ``PgUnrouted`` needs from the store it is mixed into (``store.postgres_pool.PgBase``)."""

    _db: Pool


class PgUnrouted:
    async def unrouted(self: _UnroutedHost, limit: int = CHUNK) -> list[QueuedEvent]:
        rows = await self._db.run(
            lambda conn: conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM unrouted u JOIN events e ON e.seq = u.seq ORDER BY u.seq LIMIT $1",
                None if limit < 0 else limit,
            ),
            "unrouted",
        )
        return [event_from_row(r) for r in rows]

    async def route_unrouted(self: _UnroutedHost, routes: Sequence[tuple[int, Sequence[str]]]) -> EnqueueResult:
        async def op(conn: Any) -> EnqueueResult:
            rows = await conn.fetch(
                f"DELETE FROM unrouted u USING events e WHERE e.seq = u.seq AND u.seq = ANY($1::bigint[]) "
                f"RETURNING {EVENT_COLUMNS}",
                [seq for seq, _ in routes],
            )
            found = {int(r[0]): r for r in rows}
            pairs = [(webhook, seq) for seq, webhooks in routes if seq in found for webhook in webhooks]
            queued: dict[str, list[QueuedEvent]] = {}
            if pairs:
                qids = await conn.fetch(
                    "INSERT INTO queue(webhook, seq) SELECT w, s FROM unnest($1::text[], $2::bigint[]) "
                    "WITH ORDINALITY t(w, s, o) ORDER BY o RETURNING qid",
                    [text(webhook) for webhook, _ in pairs], [seq for _, seq in pairs],
                )  # fmt: skip
                for (webhook, seq), qid in zip(pairs, sorted(int(r[0]) for r in qids), strict=True):
                    queued.setdefault(webhook, []).append(event_from_row(found[seq], qid=qid))
                self._db.touch(text(webhook) for webhook, _ in pairs)  # their owners hear of it when this commits
            return EnqueueResult([seq if seq in found else None for seq, _ in routes], queued)

        return await self._db.ordered(op)

    async def unrouted_count(self: _UnroutedHost) -> int:
        return int(await self._db.run(lambda conn: conn.fetchval("SELECT COUNT(*) FROM unrouted"), "unrouted"))
