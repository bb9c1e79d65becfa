"""Deferred routing (issue 15, intake availability): events accepted before the Webhook list was known are routed
once it is, in arrival order, exactly once.

Until the operator has read the Webhook list from the API server it cannot tell which webhooks an event goes to,
but it need not refuse the event: the dispatcher stores it unrouted (``store.unrouted``, ``Routing.UNROUTED``)
and answers 202. When the list is known (``start``), this router takes the oldest unrouted events chunk by chunk,
routes each by the dispatcher's current filters and fallbacks, exactly as ``Dispatcher.submit`` would have, and
commits each chunk's queue entries together with clearing its marks (``route_unrouted``). From then on the
dispatcher enqueues with ``Routing.BEHIND_UNROUTED``: while any event still waits unrouted (here, or parked by
another replica that does not know the list yet), the store parks new ones behind it instead of queueing them, so
nothing overtakes an older event, and the router, woken by that, routes them in turn.

Across replicas sharing PostgreSQL every replica that knows the list runs a router; the store serialises their
chunks under the queue lock and skips marks another replica cleared, so each event is routed once. A router also
looks for unrouted events every ``poll`` seconds, so events another replica parked are routed even when no event
arrives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence

from webhook_operator.api.events import ChangeEvent
from webhook_operator.delivery.parsed import ParsedEvents
from webhook_operator.store.base import EnqueueResult, QueuedEvent, Store, StoreUnavailable
from webhook_operator.store.unrouted import CHUNK, Routing

log = logging.getLogger(__name__)

#: How often a router that knows the list looks for events another replica parked (one indexed read).
POLL = 5.0
#: Wait after a failed chunk (store unavailable) before the next try.
RETRY = 1.0


class DeferredRouter:
    """Routes the store's unrouted events once the Webhook list is known. ``route`` maps parsed events to the
    webhook keys each goes to (the dispatcher's routing); ``deliver`` hands committed queue entries to the lanes,
    with the events parsed here (by seq)."""

    def __init__(self, store: Store, route: Callable[[Sequence[ChangeEvent]], list[list[str]]],
                 deliver: Callable[[EnqueueResult, Mapping[int, ChangeEvent]], int], parsed: ParsedEvents, *,
                 known: bool = True, chunk: int = CHUNK, poll: float = POLL) -> None:  # fmt: skip
        self._store, self._route, self._deliver, self._parsed = store, route, deliver, parsed
        self._chunk, self._poll = chunk, poll
        self.known = known  # False until ``start``: the operator's service starts before it has read the list
        self.routed = 0  # events this process routed late (tests, logs)
        self._wake = asyncio.Event()
        self._working = False
        self._task: asyncio.Task[None] | None = None

    @property
    def routing(self) -> Routing:
        """How the intake enqueues now: unrouted until the list is known, then behind whatever still waits."""
        return Routing.BEHIND_UNROUTED if self.known else Routing.UNROUTED

    @property
    def busy(self) -> bool:
        """Routing, or woken to route (``Dispatcher.idle`` waits for it)."""
        return self.known and (self._working or self._wake.is_set())

    def start(self) -> None:
        """The Webhook list is known and registered: route what waits, and keep routing what gets parked."""
        self.known = True
        self.kick()

    def kick(self) -> None:
        """Events were parked (behind older ones, or before the list was known): route them when possible."""
        if self.known:
            if self._task is None:
                self._task = asyncio.create_task(self._run(), name="route-unrouted")
            self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def drain(self) -> int:
        """Route every unrouted event now, oldest first, one commit per chunk; how many this call routed."""
        routed = 0
        while chunk := await self._store.unrouted(self._chunk):
            events = [self._event(entry) for entry in chunk]
            keys = iter(self._route([event for event in events if event is not None]))
            routes = [(entry.seq, next(keys) if event else []) for entry, event in zip(chunk, events, strict=True)]
            result = await self._store.route_unrouted(routes)
            self._deliver(result, {e.seq: event for e, event in zip(chunk, events, strict=True) if event is not None})
            routed += sum(1 for seq in result.seqs if seq is not None)
        self.routed += routed
        return routed

    def _event(self, entry: QueuedEvent) -> ChangeEvent | None:
        try:
            return self._parsed.parse(entry)
        except ValueError as exc:  # stored by an older intake, unreadable now: it can go nowhere
            log.warning("unrouted event %s cannot be decoded and is routed nowhere: %s", entry.event_id, exc)
            return None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # the poll: events another replica parked
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()
            self._working = True
            try:
                routed = await self.drain()
                if routed:
                    log.info("routed %d events accepted before the Webhook list was known", routed)
            except StoreUnavailable as exc:
                log.warning("unrouted events wait: store unavailable: %s; retrying in %.0f s", exc, RETRY)
                await asyncio.sleep(RETRY)
                self._wake.set()
            except Exception:  # a bug must not stop routing for good: log it and try again
                log.exception("routing unrouted events failed; retrying in %.0f s", RETRY)
                await asyncio.sleep(RETRY)
                self._wake.set()
            finally:
                self._working = False
