"""The Events the status writer's callers ask for, queued until its background task posts them.

The engine's callbacks are synchronous and an ``EventRecorder`` call is not (it waits for a worker thread), so an
Event is only queued here, cheaply, and posted on the writer's next pass. Which of the changes ``ledger`` reports
deserve an Event is decided here too (transitions with ``events.transition_events``); the recorder rate-limits.
The backlog is bounded so an API server that stopped answering cannot make it grow without limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.api.text import truncate
from webhook_operator.status.entry import Entry
from webhook_operator.status.events import WARNING, EventRecorder, ObjectRef, queue_limit_event, transition_events
from webhook_operator.status.summary import MAX_MESSAGE, OperatorConditions

log = logging.getLogger(__name__)

MAX_BACKLOG = 10_000


class EventQueue:
    """Events waiting for the background task, and the posts it started. Without a recorder, Events are off."""

    def __init__(self, recorder: EventRecorder | None, *, wake: Callable[[], None]) -> None:
        self._recorder = recorder
        self._wake = wake  # the background task posts what is queued on its next pass
        self._backlog: list[tuple[ObjectRef, str, str, str]] = []
        self._posting: set[asyncio.Task[bool]] = set()
        #: Work sharing (issue 15): only the owner of a webhook posts its Events.
        self.owns: Callable[[str], bool] | None = None

    def snapshot_changed(self, entry: Entry, previous: WebhookSnapshot | None, current: WebhookSnapshot) -> None:
        """Queue what a state change deserves (see ``events.transition_events``). The engine reports counter
        changes thousands of times a second and they never make Events, so those skip the detector."""
        moved = previous is None or previous.state is not current.state or previous.reason != current.reason
        if self._recorder is not None and moved:
            for type_, reason, message in transition_events(previous, current):
                self.queue(entry, type_, reason, message)
        if current.overflowed and self._recorder is not None:
            overflow = queue_limit_event(previous, current)
            if overflow is not None:
                self.queue(entry, *overflow)

    def conditions_changed(self, entry: Entry, before: OperatorConditions, after: OperatorConditions) -> None:
        """A new (or different) configuration problem is worth a Warning; warnings and fixes are not."""
        error = after.configuration_error
        if error is not None and error != before.configuration_error:
            self.queue(entry, WARNING, Reason.CONFIGURATION_ERROR, error)

    def queue(self, entry: Entry, type_: str, reason: str, message: str) -> None:
        if self._recorder is None or (self.owns is not None and not self.owns(entry.key)):
            return
        if len(self._backlog) >= MAX_BACKLOG:
            log.debug("event backlog full; dropping %s for %s", reason, entry.key)
            return
        ref = ObjectRef(entry.namespace, entry.name, entry.uid)
        self._backlog.append((ref, type_, reason, truncate(message, MAX_MESSAGE)))
        self._wake()

    def flush(self) -> None:
        """Start posting everything queued (on the event loop; the recorder does the rate limiting)."""
        if self._recorder is None or not self._backlog:
            return
        backlog, self._backlog = self._backlog, []
        for ref, type_, reason, message in backlog:
            task = asyncio.create_task(self._recorder.record(ref, type_, reason, message))
            self._posting.add(task)
            task.add_done_callback(self._posting.discard)

    async def settle(self, deadline: float) -> None:
        """Give the posts started so far until ``deadline`` (event loop time) to finish."""
        if self._posting:
            await asyncio.wait(self._posting, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))

    def forget(self, entry: Entry) -> None:
        """The webhook is gone: its Event series (the recorder's repeat counting) goes too."""
        if self._recorder is not None:
            self._recorder.forget(ObjectRef(entry.namespace, entry.name))
