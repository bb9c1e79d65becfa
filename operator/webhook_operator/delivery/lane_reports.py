"""Lane changes reported to the state observer (status ledger, metrics gauges) once per event-loop turn.

A lane changes several times per delivery (queued, sent, completed), and each change used to build a
``WebhookSnapshot`` and hand it to the status ledger and the gauges at once: 4.6-5 % of the operator's CPU under
one-event-per-POST load (docs/performance.md). Both consumers only keep the latest snapshot per webhook (the status
writer debounces its patches anyway), so a lane that changed is now only marked, and every marked lane is reported
once, from one ``loop.call_soon`` armed by the first mark of the turn. What the observer sees is the lane as it is at
the end of the turn, never older than what it would have seen before.

Callers that must see the observer up to date at once (tests, shutdown) call ``flush()``; trigger transitions are not
deferred (``Dispatcher._notify`` checks them synchronously).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from webhook_operator.api.outcomes import StateObserver
from webhook_operator.delivery.lane import Lane

log = logging.getLogger(__name__)


class LaneReports:
    """Marked lanes by webhook key (the latest lane object of a key wins), reported by ``flush``; ``reportable``
    is asked at flush time, so a webhook unregistered (or handed to another replica) in the meantime is not
    reported after its status was forgotten."""

    def __init__(self, observer: StateObserver, reportable: Callable[[str], bool]) -> None:
        self._observer = observer
        self._reportable = reportable
        self._dirty: dict[str, Lane] = {}

    def mark(self, lane: Lane) -> None:
        if not self._dirty:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a synchronous caller): report at once, as before
                self._observer_changed(lane)
                return
        self._dirty[lane.key] = lane

    def flush(self) -> None:
        """Report every marked lane now (a no-op when none is marked)."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        for key, lane in dirty.items():
            if self._reportable(key):
                self._observer_changed(lane)

    def _observer_changed(self, lane: Lane) -> None:
        try:
            self._observer.webhook_changed(lane.snapshot())
        except Exception:  # an observer bug must never stop delivery
            log.exception("state observer failed for %s", lane.key)
