"""Lane changes reported to the state observer (status ledger, metrics gauges) once per event-loop turn.

A lane changes several times per delivery (queued, sent, completed), and each change used to build a
``WebhookSnapshot`` and hand it to the status ledger and the gauges at once: 4.6-5 % of the operator's CPU under
one-event-per-POST load (docs/performance.md). Both consumers only keep the latest snapshot per webhook (the status
writer debounces its patches anyway), so a lane that changed is now only marked, and every marked lane is reported
once, from one ``loop.call_soon`` armed by the first mark of the turn. What the observer sees is the lane as it is at
the end of the turn, never older than what it would have seen before.

Under load most turns carry a single delivery, so once per turn was still one report per delivery (3-7 % of the CPU
in the peer-shape profile). Reports are therefore also spaced by ``INTERVAL``: a change after a quiet spell is
reported at the end of its turn as before, changes within ``INTERVAL`` of the last report wait for the next one
(at most ``INTERVAL`` later). Status is debounced for far longer than that and gauges are read on a scrape, so no
reader can tell, except by calling ``flush()``, which still reports at once.

Callers that must see the observer up to date at once (tests, shutdown) call ``flush()``; trigger transitions are not
deferred (``Dispatcher._notify`` checks them synchronously).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from webhook_operator.api.outcomes import StateObserver
from webhook_operator.delivery.lane import Lane

log = logging.getLogger(__name__)

#: Seconds between two reports of a busy dispatcher (see the module docstring).
INTERVAL = 0.05


class LaneReports:
    """Marked lanes by webhook key (the latest lane object of a key wins), reported by ``flush``; ``reportable``
    is asked at flush time, so a webhook unregistered (or handed to another replica) in the meantime is not
    reported after its status was forgotten."""

    def __init__(self, observer: StateObserver, reportable: Callable[[str], bool], interval: float = INTERVAL) -> None:
        self._observer = observer
        self._reportable = reportable
        self._interval = interval
        self._dirty: dict[str, Lane] = {}
        self._last = -interval  # loop time of the last report
        self._armed: asyncio.Handle | None = None

    def mark(self, lane: Lane) -> None:
        if not self._dirty:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): report at once, as before
                self._observer_changed(lane)
                return
            if self._armed is None:
                due = self._last + self._interval
                self._armed = loop.call_soon(self._due) if loop.time() >= due else loop.call_at(due, self._due)
        self._dirty[lane.key] = lane

    def _due(self) -> None:
        self._armed = None
        self.flush()

    def flush(self) -> None:
        """Report every marked lane now (a no-op when none is marked)."""
        if not self._dirty:
            return
        with contextlib.suppress(RuntimeError):  # no loop: a synchronous caller, nothing to space
            self._last = asyncio.get_running_loop().time()
        dirty, self._dirty = self._dirty, {}
        for key, lane in dirty.items():
            if self._reportable(key):
                self._observer_changed(lane)

    def _observer_changed(self, lane: Lane) -> None:
        try:
            self._observer.webhook_changed(lane.snapshot())
        except Exception:  # an observer bug must never stop delivery
            log.exception("state observer failed for %s", lane.key)
