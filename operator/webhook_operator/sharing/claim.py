"""The status claim: before patching a webhook's status, ask the store whether this replica still holds its lease.

A replica that was paused past its lease (or cut off from the database) must not overwrite the status its
successor writes. Its own bookkeeping (``LeaseManager.token``) already stops it once the lease may have expired by
its clock; the claim asks the store, whose clock decides, right before each patch. The status writer starts a few
patches at a time; the claims of the patches started together are coalesced into one ``valid`` call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from webhook_operator.store.base import LeaseStore, StoreUnavailable

log = logging.getLogger(__name__)


class Holder(Protocol):
    @property
    def replica(self) -> str: ...

    def tokens(self, webhooks: Sequence[str]) -> dict[str, int]: ...


class StatusClaim:
    """``await claim(key)``: True while this replica holds ``key``'s lease by the store; raises
    ``StoreUnavailable`` when the store cannot say (the writer retries later)."""

    def __init__(self, store: LeaseStore, holder: Holder) -> None:
        self._store, self._holder = store, holder
        self._batch: dict[str, int] | None = None
        self._answer: asyncio.Future[set[str]] | None = None
        self._asking: set[asyncio.Task[None]] = set()

    async def __call__(self, key: str) -> bool:
        token = self._holder.tokens([key]).get(key)
        if token is None:
            return False
        if self._batch is None or self._answer is None:
            loop = asyncio.get_running_loop()
            self._batch, self._answer = {}, loop.create_future()
            loop.call_soon(self._ask)  # after the other writes started in this pass added their keys
        self._batch[key] = token
        return key in await asyncio.shield(self._answer)

    def _ask(self) -> None:
        batch, answer = self._batch or {}, self._answer
        self._batch = self._answer = None
        if answer is not None:
            task = asyncio.ensure_future(self._valid(batch, answer))
            self._asking.add(task)
            task.add_done_callback(self._asking.discard)

    async def _valid(self, batch: Mapping[str, int], answer: asyncio.Future[set[str]]) -> None:
        try:
            held = await self._store.valid(self._holder.replica, batch)
        except Exception as exc:  # StoreUnavailable, or a bug: either way nothing is claimed
            if not isinstance(exc, StoreUnavailable):
                log.exception("status claim failed")
            answer.set_exception(StoreUnavailable(f"status claim not possible: {exc}"))
            answer.exception()  # retrieved here too: a claim nobody awaits any more must not warn
            return
        answer.set_result(held)
