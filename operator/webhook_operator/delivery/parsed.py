"""Parsed events by store sequence number, so a delivery does not re-parse what the intake just parsed.

Bounded: a long backlog paged in from disk is parsed on first use and the oldest entries fall out. Events are
immutable once accepted, so a cached model can never be stale.
"""

from __future__ import annotations

from collections import OrderedDict

from webhook_operator.api.events import ChangeEvent
from webhook_operator.store.base import QueuedEvent

DEFAULT_SIZE = 20_000


class ParsedEvents:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._parsed: OrderedDict[int, ChangeEvent] = OrderedDict()

    def put(self, seq: int, event: ChangeEvent) -> None:
        self._parsed[seq] = event
        if len(self._parsed) > self._size:
            self._parsed.popitem(last=False)

    def get(self, entry: QueuedEvent) -> ChangeEvent:
        event = self._parsed.get(entry.seq)
        if event is None:
            event = ChangeEvent.model_validate_json(entry.body)
            self.put(entry.seq, event)
        return event
