"""What the status writer knows about every webhook, and when each one's status is due (no I/O).

Every report from the engine or the operator lands here, synchronously and cheaply: it updates the webhook's
``entry.Entry``, marks the webhook in the ``schedule.Scheduler`` (urgent when the change is a transition, see
``Entry.urgent``) and hands the change to the ``EventQueue``, which decides whether it deserves an Event. Nothing
is written here; the ``pump`` takes what is due.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from webhook_operator.api.outcomes import WebhookSnapshot
from webhook_operator.status.entry import Entry
from webhook_operator.status.event_queue import EventQueue
from webhook_operator.status.schedule import Scheduler
from webhook_operator.status.summary import OperatorConditions


class Ledger:
    """One ``Entry`` per webhook, kept until the webhook is forgotten."""

    def __init__(
        self, sched: Scheduler, events: EventQueue, *, clock: Callable[[], float], on_due: Callable[[float], None]
    ) -> None:
        self._sched = sched
        self._events = events
        self._clock = clock
        self._on_due = on_due  # a write became due earlier than before: the background task may need waking
        self._entries: dict[str, Entry] = {}

    def get(self, key: str) -> Entry | None:
        return self._entries.get(key)

    def entry(self, key: str) -> Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Entry.for_key(key)
        return entry

    def _mark(self, entry: Entry) -> None:
        due = self._sched.mark(entry.key, self._clock(), urgent=entry.urgent)
        if due is not None:
            self._on_due(due)

    def webhook_changed(self, snapshot: WebhookSnapshot) -> None:
        entry = self.entry(snapshot.key)
        previous, entry.snapshot = entry.snapshot, snapshot
        self._events.snapshot_changed(entry, previous, snapshot)
        self._mark(entry)

    def set_generation(
        self, key: str, generation: int | None, *, uid: str | None, current_status: Mapping[str, Any] | None
    ) -> None:
        entry = self.entry(key)
        if uid is not None:
            entry.uid = uid
        if current_status is not None:
            entry.adopt(current_status)
        if generation != entry.generation:
            entry.generation = generation
            self._mark(entry)

    def set_extra(self, key: str, conditions: OperatorConditions) -> None:
        entry = self.entry(key)
        if conditions == entry.operator:
            return
        before, entry.operator = entry.operator, conditions
        self._events.conditions_changed(entry, before, conditions)
        self._mark(entry)

    def set_history(self, key: str, history: Mapping[str, Any]) -> None:
        entry = self.entry(key)
        if entry.history == history:
            return
        entry.history = dict(history)
        entry.operations += 1  # a spec change: written with the generation, not after the debounce
        self._mark(entry)

    def set_last_test(self, key: str, last_test: Mapping[str, Any]) -> None:
        entry = self.entry(key)
        entry.last_test = dict(last_test)
        entry.operations += 1
        self._mark(entry)

    def set_handled(self, key: str, operation: str, value: str) -> None:
        entry = self.entry(key)
        if entry.handled.get(operation) == value:
            return
        entry.handled[operation] = value
        entry.operations += 1
        self._mark(entry)

    def released(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.snapshot = None

    def forget(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        self._sched.forget(key)
        if entry is not None:
            self._events.forget(entry)
