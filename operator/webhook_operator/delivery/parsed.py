"""Parsed events by store sequence number, so a delivery does not re-parse what the intake just parsed.

Each entry counts the lanes it was queued to and leaves when the last of them has taken it: lanes read their queues
oldest first, so evicting the oldest entry of a full cache (a plain FIFO/LRU) evicts exactly the one needed next —
a backlog one event larger than the cache re-parsed every event (a burst of 30,000 events re-validated 29,480 of
them, 17 % of the engine's CPU, docs/performance.md). A full cache therefore refuses new entries instead (they are
parsed when used, as a miss always is), and only an entry left behind — its lane deleted, its events paged out of
memory or taken by another replica — is evicted, once ``2 * size`` newer events have been accepted.

A miss (a backlog paged in from disk, a retry of a batch already taken) parses and is not kept: what reads it next
is another lane paging in on its own, or the same batch retried minutes later. Events are immutable once accepted,
so a cached model can never be stale; a count that is off (a lane that takes a batch twice) costs a parse, never a
wrong event.
"""

from __future__ import annotations

from collections import OrderedDict

from webhook_operator.api.events import ChangeEvent
from webhook_operator.store.base import QueuedEvent

DEFAULT_SIZE = 20_000


class _Kept:
    __slots__ = ("event", "uses")

    def __init__(self, event: ChangeEvent, uses: int) -> None:
        self.event, self.uses = event, uses  # uses: lanes that have not taken it yet


class ParsedEvents:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._parsed: OrderedDict[int, _Kept] = OrderedDict()  # oldest seq first
        self._newest = 0
        self.hits = self.misses = self.refused = 0

    def __len__(self) -> int:
        return len(self._parsed)

    def put(self, seq: int, event: ChangeEvent, uses: int) -> None:
        """Keep ``event`` for the ``uses`` lanes it was queued to (none: nothing will ask for it)."""
        if uses <= 0:
            return
        self._newest = max(self._newest, seq)
        parsed = self._parsed
        if len(parsed) >= self._size:
            stale = self._newest - 2 * self._size
            while parsed and next(iter(parsed)) <= stale:
                parsed.popitem(last=False)
            if len(parsed) >= self._size:
                self.refused += 1
                return
        parsed[seq] = _Kept(event, uses)

    def get(self, entry: QueuedEvent) -> ChangeEvent:
        """The event of ``entry`` for one lane that takes it; parsed from its stored body on a miss."""
        kept = self._parsed.get(entry.seq)
        if kept is None:
            self.misses += 1
            return ChangeEvent.model_validate_json(entry.body)
        self.hits += 1
        kept.uses -= 1
        if kept.uses <= 0:
            del self._parsed[entry.seq]
        return kept.event

    def parse(self, entry: QueuedEvent) -> ChangeEvent:
        """The event of ``entry`` without taking it (routing reads an event before any lane has it)."""
        kept = self._parsed.get(entry.seq)
        if kept is not None:
            return kept.event
        return ChangeEvent.model_validate_json(entry.body)
