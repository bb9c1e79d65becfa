"""A lane's completion commit, pipelined with its next request (the seed's lane: ordering webhook).

Split from ``worker`` so that the lane loop and the durability rule it keeps read apart: the rule is here.
"""

from __future__ import annotations

import asyncio
import logging

from webhook_operator.store.base import AttemptRecord, LaneStore, LeaseLost, StoreUnavailable

log = logging.getLogger("webhook_operator.delivery.worker")

#: Pause before trying again after the store failed or a bug escaped an attempt: never a hot loop.
BACKOFF = 1.0
#: How long a shutdown waits for the last completion of a lane to commit.
DRAIN_GRACE = 10.0

__all__ = ["BACKOFF", "DRAIN_GRACE", "PipelinedCompletion"]


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class PipelinedCompletion:
    """A lane's completion commit, pipelined with its next request: never two unconfirmed per lane, so a crash
    repeats at most the batches of one round trip.

    A write that fails is written again (every second) until it succeeds, in the background: that batch is already
    out of the in-memory queue, so giving up — or waiting for a next batch that may never come — would let a
    restart deliver it again behind newer events."""

    def __init__(self, store: LaneStore, key: str) -> None:
        self._store, self._key = store, key
        self._pending: asyncio.Task[None] | None = None

    def write(self, qids: list[int], line: AttemptRecord) -> None:
        self._pending = asyncio.ensure_future(self._until_written(qids, line))
        # A lane dropped after losing its lease may never confirm: mark the exception retrieved so asyncio does not
        # log a traceback for it (``confirm`` still re-raises it to a lane that does).
        self._pending.add_done_callback(_retrieve)

    async def _until_written(self, qids: list[int], line: AttemptRecord) -> None:
        while True:
            try:
                await self._store.complete(self._key, qids, line)
                return
            except StoreUnavailable as exc:
                log.error("recording a delivery for %s failed: %s; writing it again in 1 s", self._key, exc)
                await asyncio.sleep(BACKOFF)
            except LeaseLost as exc:  # another replica owns the webhook now and sends the batch again
                log.warning("delivery not recorded: %s", exc)
                raise

    async def confirm(self) -> None:
        """Wait until the previous completion is committed."""
        pending = self._pending
        if pending is not None:
            try:
                if pending.done():
                    pending.result()  # the common case on a busy lane: no wait, no shield to build
                else:
                    await asyncio.shield(pending)  # a stopping worker must not cancel the write
            finally:
                if pending.done():  # written, or failed for good (a bug): never wedge the lane on it
                    self._pending = None

    async def drain(self, grace: float = DRAIN_GRACE) -> None:
        """At shutdown: give an unconfirmed completion ``grace`` seconds to commit, then give up on it (the batch
        is then delivered again after the restart: at-least-once, never lost)."""
        if self._pending is not None and not self._pending.done():
            done, _ = await asyncio.wait({self._pending}, timeout=grace)
            for task in done:  # a fenced write (LeaseLost) was logged where it failed: retrieved, not re-raised
                task.exception()
            if not done:
                self._pending.cancel()
                log.error("a delivery of %s could not be recorded before shutdown; it will be sent again", self._key)
        self._pending = None
