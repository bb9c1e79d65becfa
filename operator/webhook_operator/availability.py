"""Start-up in two stages, and readiness that says which one is reached (issue 15, intake availability).

*Intake ready*: the store is open. From then on events are accepted durably (202) — before the Webhook list is
known they are stored unrouted (``delivery.unrouted``) — so a Kubernetes Service may send the pod events. Opening
the store is retried with backoff for as long as it takes; meanwhile ``POST /api/v1/events`` and ``/readyz`` answer
503 and nothing is half-accepted.

*Delivery ready*: the Webhook list was read from the API server and registered; unrouted events are routed and new
ones go straight to their lanes. Reading the list runs in the background and is retried with backoff until the API
server answers, so an operator that starts while the API server is away accepts events at once instead of refusing
them until it is back (measured before: 16 s of 503s after a restart during an API-server outage).

The kopf start-up handler waits for the first stage only (kopf starts its watches once it returns; they retry
the API server on their own, and every handler needs the store), never for the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from webhook_operator.store.base import StoreUnavailable

log = logging.getLogger(__name__)

#: Backoff between attempts (seconds): doubling from FIRST up to LAST, so a short outage costs little and a long
#: one does not flood the log or the API server.
FIRST, LAST = 0.5, 5.0


def backoff(attempt: int) -> float:
    """The wait after failed attempt number ``attempt`` (0-based)."""
    return float(min(LAST, FIRST * 2 ** min(attempt, 16)))


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())  # the Kubernetes client's errors span lines
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


class Availability:
    """The two start-up stages and what ``/readyz`` reports about them."""

    def __init__(self) -> None:
        self.intake = False  # the store is open: events are accepted
        self.delivery = False  # the Webhook list is registered: events are routed and delivered
        self.store_error: str | None = None  # why the store did not open yet (readiness shows it)

    async def open_store(self, open_store: Callable[[], Awaitable[None]]) -> None:
        """Open the store, retrying with backoff until it opens (the intake answers 503 meanwhile). Only
        ``StoreUnavailable`` is retried: anything else is a bug or a configuration error and is raised."""
        attempt = 0
        while True:
            try:
                await open_store()
            except StoreUnavailable as exc:
                delay = backoff(attempt)
                self.store_error = str(exc)
                log.warning("the event store is unavailable (%s); the intake answers 503; retrying in %.1f s "
                            "(attempt %d)", exc, delay, attempt + 1)  # fmt: skip
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self.store_error = None
            self.intake = True
            if attempt:
                log.info("the event store is open after %d failed attempts; the intake accepts events", attempt)
            return

    async def sync_webhooks(self, list_webhooks: Callable[[], Awaitable[Sequence[Any]]],
                            register: Callable[[Sequence[Any]], Awaitable[None]]) -> None:  # fmt: skip
        """Read the Webhook list and register it, retrying with backoff until both succeed; then delivery is ready.
        Runs in the background: the intake accepts (unrouted) meanwhile."""
        attempt = 0
        while True:
            try:
                resources = await list_webhooks()
            except Exception as exc:  # the API server is away, refuses, times out: all "not yet"
                delay = backoff(attempt)
                log.warning("cannot list Webhooks from the Kubernetes API server (%s); retrying in %.1f s (attempt "
                            "%d); events are accepted meanwhile and routed once the list is read",
                            _reason(exc), delay, attempt + 1)  # fmt: skip
                attempt += 1
                await asyncio.sleep(delay)
                continue
            try:
                await register(resources)
            except StoreUnavailable as exc:
                delay = backoff(attempt)
                log.warning("cannot register the Webhook list: store unavailable (%s); retrying in %.1f s", exc, delay)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self.delivery = True
            log.info("registered %d webhooks; delivery ready%s", len(resources),
                     f" (the API server answered after {attempt} failed attempts)" if attempt else "")  # fmt: skip
            return

    async def readiness(self, webhooks: int, unrouted: Callable[[], Awaitable[int]]) -> tuple[int, dict[str, Any]]:
        """``/readyz``: 200 while the intake accepts (so a Service sends this pod events), else 503; the body says
        which stage is reached. ``unrouted`` is read from the store (None when it cannot be read within 2 s)."""
        count: int | None = None
        if self.intake:
            with contextlib.suppress(Exception):  # a store that cannot answer must not take the probe down
                count = await asyncio.wait_for(unrouted(), 2.0)
        body: dict[str, Any] = {
            "status": "ready" if self.intake else "starting",
            "intake": "ready" if self.intake else "starting",
            "delivery": "ready" if self.delivery else "starting",
            "webhooks": webhooks,
            "unrouted": count,
        }
        if self.store_error is not None:  # why is in the log: this port is unauthenticated
            body["store"] = "unavailable"
        return (200 if self.intake else 503), body
