"""The PostgreSQL store's intake role: ``enqueue``, with concurrent calls coalesced into one ordered commit.

Split from ``store.postgres`` (which holds the other roles) because the coalescing is the one piece of concurrency
the roles own themselves; the ordered commit it rides on is ``postgres_pool.Pool.ordered``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from typing import Any

from webhook_operator.store.base import EnqueueResult, QueuedEvent, RoutedEvent
from webhook_operator.store.postgres_pool import EnqueueCall, EnqueueDrain, PgBase
from webhook_operator.store.postgres_schema import text, texts
from webhook_operator.store.unrouted import Routing, parks


class PgIntake(PgBase):
    async def enqueue(self, events: Sequence[RoutedEvent], *, routing: Routing = Routing.GIVEN) -> EnqueueResult:
        """Concurrent calls are coalesced: the first schedules a drain on the ordered group commit, and every call
        that arrives before that drain starts rides along in the same two statements (events, then queue
        entries) instead of four round trips each. A drain failing (StoreFull, the database gone, the COMMIT)
        fails every call in it: nothing of any of them was taken."""
        for event in events:
            event.event_id.encode()  # a lone surrogate fails its own call here, not the whole drain
        call = EnqueueCall(events, self._clock(), routing=routing)
        drain = self._drain
        if drain is None or drain.started or (drain.future is not None and drain.future.done()):
            drain = self._drain = EnqueueDrain()
            drain.future = asyncio.ensure_future(self._db.ordered(partial(self._drain_enqueues, drain)))
        drain.calls.append(call)
        assert drain.future is not None
        await asyncio.shield(drain.future)  # a caller that goes away must not cancel the others' commit
        assert call.result is not None
        return call.result

    async def _drain_enqueues(self, drain: EnqueueDrain, conn: Any) -> None:
        drain.started = True  # later callers start the next drain
        calls = list(drain.calls)
        flat = [(event, call.received_at) for call in calls for event in call.events]
        await self._budget.check(conn)
        inserted = await conn.fetch(
            "INSERT INTO events(event_id, received_at, body) SELECT i, r, b "
            "FROM unnest($1::text[], $2::bytea[], $3::float8[]) WITH ORDINALITY t(i, b, r, o) ORDER BY o "
            "ON CONFLICT (event_id) DO NOTHING RETURNING seq, event_id, octet_length(body) + octet_length(event_id)",
            texts([e.event_id for e, _ in flat]), [e.body for e, _ in flat], [r for _, r in flat],
        )  # fmt: skip
        new = {r[1]: int(r[0]) for r in inserted}  # by stored id (``text``-ed)
        added = sum(int(r[2]) for r in inserted)
        if added:  # the budget's counter, in the same commit as the events it counts
            await conn.execute("UPDATE store_stats SET event_bytes = event_bytes + $1", added)
        rows: list[tuple[str, RoutedEvent, int, float, dict[str, list[QueuedEvent]]]] = []
        # Unrouted events wait (``store.unrouted``): read under the queue lock, so no replica routes or parks
        # meanwhile; a call of this drain that parks makes the later ones in it wait behind it too.
        behind = any(call.routing is Routing.BEHIND_UNROUTED for call in calls)
        waiting = behind and await conn.fetchval("SELECT EXISTS (SELECT 1 FROM unrouted)")
        parked: list[int] = []
        for call in calls:
            seqs: list[int | None] = []
            queued: dict[str, list[QueuedEvent]] = {}
            park = parks(call.routing, waiting)
            for event in call.events:
                seq = new.pop(text(event.event_id), None)  # the first copy of an id is the accepted one
                seqs.append(seq)
                if seq is not None and park:
                    parked.append(seq)
                elif seq is not None:
                    rows.extend((webhook, event, seq, call.received_at, queued) for webhook in event.webhooks)
            waiting = waiting or (park and any(s is not None for s in seqs))
            call.result = EnqueueResult(seqs, queued, unrouted=park)
        if parked:
            await conn.execute("INSERT INTO unrouted(seq) SELECT unnest($1::bigint[])", parked)
        if rows:
            self._db.touch(text(row[0]) for row in rows)  # other replicas hear of it when this commits
            qids = await conn.fetch(
                "INSERT INTO queue(webhook, seq) SELECT w, s FROM unnest($1::text[], $2::bigint[]) "
                "WITH ORDINALITY t(w, s, o) ORDER BY o RETURNING qid",
                [text(row[0]) for row in rows], [row[2] for row in rows],
            )  # fmt: skip
            for (webhook, event, seq, at, queued), qid in zip(rows, sorted(int(r[0]) for r in qids), strict=True):
                queued.setdefault(webhook, []).append(QueuedEvent(qid, seq, event.event_id, event.body, at))
