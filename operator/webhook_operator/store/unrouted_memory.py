"""``UnroutedStore`` for ``MemoryStore`` (see ``store.unrouted``): the marks are a dict of seqs in arrival order.

``enqueue`` itself (``store.memory``) stores events unrouted when ``unrouted.parks`` says so; this mixin reads and
routes them. Each call changes everything before its first ``await``, so it is atomic like one SQLite transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from itertools import islice
from typing import Protocol

from webhook_operator.store.base import EnqueueResult, QueuedEvent
from webhook_operator.store.unrouted import CHUNK


class _UnroutedHost(Protocol):
    """What ``MemoryUnrouted`` needs from the store it is mixed into (``store.memory._MemoryState``)."""

    unrouted_seqs: dict[int, None]
    _by_seq: dict[int, QueuedEvent]

    def _writable(self) -> None: ...

    def _readable(self) -> None: ...

    def _queue(self, webhook: str, seq: int) -> int: ...


class MemoryUnrouted:
    async def unrouted(self: _UnroutedHost, limit: int = CHUNK) -> list[QueuedEvent]:
        self._readable()
        seqs = self.unrouted_seqs if limit < 0 else islice(self.unrouted_seqs, limit)
        return [self._by_seq[seq] for seq in seqs]

    async def route_unrouted(self: _UnroutedHost, routes: Sequence[tuple[int, Sequence[str]]]) -> EnqueueResult:
        self._writable()
        seqs: list[int | None] = []
        queued: dict[str, list[QueuedEvent]] = {}
        for seq, webhooks in routes:
            if seq not in self.unrouted_seqs:  # routed already (or never unrouted)
                seqs.append(None)
                continue
            del self.unrouted_seqs[seq]
            seqs.append(seq)
            event = self._by_seq[seq]
            for webhook in webhooks:
                queued.setdefault(webhook, []).append(replace(event, qid=self._queue(webhook, seq)))
        await asyncio.sleep(0)
        return EnqueueResult(seqs, queued)

    async def unrouted_count(self: _UnroutedHost) -> int:
        self._readable()
        return len(self.unrouted_seqs)
