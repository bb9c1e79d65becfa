"""Parsed events by store sequence number, so a delivery does not re-parse what the intake just parsed.

Lanes read their queues oldest first, so evicting the oldest entry of a full cache (a plain FIFO) evicts exactly the
one needed next: a backlog one event larger than the cache re-parsed every event (a burst of 30,000 events
re-validated 29,480 of them, 17 % of the engine's loop time, docs/performance.md). So each entry counts the local
lanes it was queued to and leaves when the last of them has taken it (``get``; a read that is not a take — routing,
the entity keyer — is ``parse``). A full cache makes room, in this order, by evicting:

* an entry nothing will take any more (its lane deleted, its events dead-lettered by the queue limits or skipped),
  once ``2 * size`` newer events have been accepted;
* the oldest entry some of its lanes have taken but not all: the others lag behind (one webhook in retry backoff
  among many), and parse it when they get there, exactly as under FIFO — refusing instead would make every lane
  that keeps up parse half of all events;
* else it refuses the new entry (parsed when used): every kept entry is still wanted by all its lanes, oldest first.

A miss (a backlog paged in from disk after a restart, a batch retried, events accepted before the Webhook list was
known) is parsed once and kept in a small FIFO (``RECENT_SIZE``) for the next reader: the other lanes paging in the
same backlog, or the lanes the deferred router hands it to. At most ``size + recent`` models are held. Events are
immutable once accepted, so a cached model can never be stale; a count that is off costs parses, never a wrong event.
"""

from __future__ import annotations

from collections import OrderedDict

from webhook_operator.api.events import ChangeEvent
from webhook_operator.store.base import QueuedEvent

DEFAULT_SIZE = 20_000
#: Events parsed on a miss, kept first in, first out for the next reader (the other lanes paging in the same
#: backlog after a restart, a batch retried, the deferred router and then the lanes).
RECENT_SIZE = 2_000


class _Kept:
    __slots__ = ("event", "uses")

    def __init__(self, event: ChangeEvent, uses: int) -> None:
        self.event, self.uses = event, uses  # uses: lanes that have not taken it yet


class ParsedEvents:
    def __init__(self, size: int = DEFAULT_SIZE, recent: int = RECENT_SIZE) -> None:
        self._size, self._recent_size = size, recent
        self._parsed: OrderedDict[int, _Kept] = OrderedDict()  # oldest seq first
        self._lagging: OrderedDict[int, None] = OrderedDict()  # kept, taken by some of its lanes but not all
        self._recent: OrderedDict[int, ChangeEvent] = OrderedDict()  # misses, first in first out
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
                self._lagging.pop(parsed.popitem(last=False)[0], None)
            if len(parsed) >= self._size and self._lagging:  # its other lanes lag behind: they parse (as FIFO did)
                del parsed[self._lagging.popitem(last=False)[0]]
            if len(parsed) >= self._size:
                self.refused += 1
                return
        parsed[seq] = _Kept(event, uses)

    def get(self, entry: QueuedEvent) -> ChangeEvent:
        """The event of ``entry`` for one lane that takes it; parsed from its stored body on a miss."""
        kept = self._parsed.get(entry.seq)
        if kept is None:
            return self._read(entry)
        self.hits += 1
        kept.uses -= 1
        if kept.uses <= 0:
            del self._parsed[entry.seq]
            self._lagging.pop(entry.seq, None)
        elif entry.seq not in self._lagging:
            self._lagging[entry.seq] = None
        return kept.event

    def keep(self, seq: int, event: ChangeEvent) -> None:
        """Keep ``event`` for whoever reads it next, not counted (first in, first out)."""
        recent = self._recent
        recent[seq] = event
        if len(recent) > self._recent_size:
            recent.popitem(last=False)

    def _read(self, entry: QueuedEvent) -> ChangeEvent:
        event = self._recent.get(entry.seq)
        if event is None:
            self.misses += 1
            event = ChangeEvent.model_validate_json(entry.body)
            self.keep(entry.seq, event)
        return event

    def parse(self, entry: QueuedEvent) -> ChangeEvent:
        """The event of ``entry`` without taking it (routing reads an event before any lane has it)."""
        kept = self._parsed.get(entry.seq)
        return kept.event if kept is not None else self._read(entry)
