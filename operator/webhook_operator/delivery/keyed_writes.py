"""The store writes of a lane that delivers in parallel: never a stale retry state, never a lost completion.

Several batches of one webhook finish at once, each changing the lane's one ``RetryState`` (a key held, a key
delivered). Every write that carries that state goes through one lock and writes the state *as it is when the write
starts*, so concurrent completions of different keys never put back a stale copy of each other's holds. While
nothing is held (the steady state) a completion writes no retry state (NULL, as the seed's lane) and takes no lock,
so completions commit together (SQLite's group commit, PostgreSQL's pool); a write that carries state first waits
for those, so one of them can never land after it and clear a hold.

A write that fails with ``StoreUnavailable`` is written again every second until it succeeds (memory has moved on
already: giving up would let a restart deliver a batch again behind newer events of its entity). ``LeaseLost``
propagates: another replica owns the webhook now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from webhook_operator.delivery.retry import is_clear
from webhook_operator.store.base import AttemptRecord, LaneStore, RetryState, StoreUnavailable

log = logging.getLogger(__name__)

#: Pause before writing again after the store failed.
BACKOFF = 1.0


class RetryWrites:
    def __init__(self, store: LaneStore, key: str, current: Callable[[], RetryState]) -> None:
        self._store, self._key, self._current = store, key, current
        self._lock = asyncio.Lock()
        self._serial_pending = 0
        self._plain = 0
        self._plain_idle = asyncio.Event()
        self._plain_idle.set()
        self._stored_clear = is_clear(current())
        #: Writes under way (a shutdown gives them a grace period).
        self.pending: set[asyncio.Future[None]] = set()

    def track(self, write: Awaitable[None]) -> asyncio.Future[None]:
        """Run ``write`` as its own task (a cancelled batch task must not cancel it), remembered until done."""
        future = asyncio.ensure_future(write)
        self.pending.add(future)
        future.add_done_callback(self.pending.discard)
        return future

    async def completed(self, qids: Sequence[int], line: AttemptRecord) -> None:
        """A batch was delivered (memory already updated)."""
        if self._serial_pending == 0 and self._stored_clear and is_clear(self._current()):
            self._plain += 1
            self._plain_idle.clear()
            try:
                await self.until_written(lambda: self._store.complete(self._key, qids, line))
            finally:
                self._plain -= 1
                if not self._plain:
                    self._plain_idle.set()
            return
        await self.serial(lambda retry: self._store.complete(self._key, qids, line, None if is_clear(retry) else retry))

    async def serial(self, write: Callable[[RetryState], Awaitable[None]]) -> None:
        """A write carrying the lane's retry state: one at a time, after the plain completions before it, with the
        state as it is when it starts."""
        self._serial_pending += 1
        try:
            async with self._lock:
                await self._plain_idle.wait()
                while True:
                    retry = self._current()
                    try:
                        await write(retry)
                    except StoreUnavailable as exc:
                        log.error("recording for %s failed: %s; writing it again in 1 s", self._key, exc)
                        await asyncio.sleep(BACKOFF)
                        continue
                    self._stored_clear = is_clear(self._current())
                    return
        finally:
            self._serial_pending -= 1

    async def until_written(self, write: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await write()
                return
            except StoreUnavailable as exc:
                log.error("recording a delivery for %s failed: %s; writing it again in 1 s", self._key, exc)
                await asyncio.sleep(BACKOFF)
