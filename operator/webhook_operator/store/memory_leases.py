"""Leases, liveness and fencing (``LeaseStore``) for the single-process stores, by the store's own clock.

``LeaseBook`` is the whole state machine in plain dictionaries, shared by the in-memory store and (as the
reference the SQLite statements follow) kept deliberately identical in meaning to the PostgreSQL rows: two
"replicas" in one store must see exactly what two replicas on one PostgreSQL database see, so the replica-side
engine can be unit-tested against the in-memory store. Times are whatever clock the store was given (tests pin
it), so expiry is exact and never depends on real waits.

The rules, one place for all backends (``docs`` and ``tests/unit/store/test_leases.py`` hold them too):

- a lease is *live* while ``now < expires_at``; expiring one ("release", "leave") sets ``expires_at`` to now;
- ``acquire`` keeps the token only for a *renewal* (the row is the caller's and live); a lease that is free,
  expired (even if it was the caller's and nobody took it) or new is a fresh acquisition with a fresh token from one
  counter shared by all webhooks, so a lapse always changes the token and a lane that ran on the old one is fenced;
- a fence check passes iff the row names the fence's replica with the fence's token and is live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Protocol

from webhook_operator.store.base import Fence, Lease, LeaseLost, Replica


@dataclass(frozen=True)
class _ReplicaRow:
    heartbeat_at: float
    expires_at: float
    address: str | None


def lease_lost(webhook: str, replica: str, token: int | None) -> LeaseLost:
    """The one message every backend raises, naming the webhook (the lane's log line is all an operator sees)."""
    held = "no lease" if token is None else f"lease token {token}"
    return LeaseLost(
        f"webhook {webhook}: replica {replica} no longer holds its lease (it had {held}); nothing was written"
    )


class LeaseBook:
    """Replicas, one lease per webhook and the fence, in memory. Every method takes ``now`` (the store's clock)."""

    def __init__(self) -> None:
        self.fence: Fence | None = None
        self._replicas: dict[str, _ReplicaRow] = {}
        self._leases: dict[str, Lease] = {}
        self._tokens = count(1)

    def heartbeat(self, now: float, replica: str, ttl: float, address: str | None) -> list[Replica]:
        self._replicas[replica] = _ReplicaRow(now, now + ttl, address)
        live = [(rid, row) for rid, row in self._replicas.items() if now < row.expires_at]
        return [Replica(rid, row.heartbeat_at, row.address) for rid, row in sorted(live)]

    def leave(self, now: float, replica: str) -> None:
        self._replicas.pop(replica, None)
        for webhook, lease in list(self._leases.items()):
            if lease.owner == replica:
                self._leases[webhook] = _expired(lease, now)

    def acquire(self, now: float, replica: str, webhooks: Sequence[str], ttl: float) -> dict[str, int]:
        held: dict[str, int] = {}
        for webhook in dict.fromkeys(webhooks):
            lease = self._leases.get(webhook)
            if lease is not None and now < lease.expires_at:
                if lease.owner != replica:
                    continue  # someone else's and live
                token = lease.token  # a renewal keeps its token
            else:
                token = next(self._tokens)  # free or expired: a new acquisition
            self._leases[webhook] = Lease(webhook, replica, token, now + ttl)
            held[webhook] = token
        return held

    def release(self, now: float, replica: str, leases: Mapping[str, int]) -> None:
        for webhook, token in leases.items():
            lease = self._leases.get(webhook)
            if lease is not None and lease.owner == replica and lease.token == token:
                self._leases[webhook] = _expired(lease, now)

    def valid(self, now: float, replica: str, leases: Mapping[str, int]) -> set[str]:
        return {webhook for webhook, token in leases.items() if self._holds(now, webhook, replica, token)}

    def leases(self) -> list[Lease]:
        return [self._leases[webhook] for webhook in sorted(self._leases)]

    def check(self, now: float, webhook: str) -> None:
        """The fence check a lane write makes before it changes anything (no fence: nothing to check)."""
        fence = self.fence
        if fence is None:
            return
        token = fence.token(webhook)
        if token is None or not self._holds(now, webhook, fence.replica, token):
            raise lease_lost(webhook, fence.replica, token)

    def _holds(self, now: float, webhook: str, replica: str, token: int) -> bool:
        lease = self._leases.get(webhook)
        return lease is not None and lease.owner == replica and lease.token == token and now < lease.expires_at


def _expired(lease: Lease, now: float) -> Lease:
    return Lease(lease.webhook, lease.owner, lease.token, min(lease.expires_at, now))


class _LeaseHost(Protocol):
    """What ``MemoryLeases`` needs from the store it is mixed into (``store.memory._MemoryState``)."""

    lease_book: LeaseBook

    @property
    def _clock(self) -> Callable[[], float]: ...

    def _writable(self) -> None: ...

    def _readable(self) -> None: ...


class MemoryLeases:
    """``LeaseStore`` for ``MemoryStore``: each call is atomic (no ``await`` before its change), then yields once
    like every other call of that store. Lease writes fail with the store's simulated outages like any write."""

    def set_fence(self: _LeaseHost, fence: Fence | None) -> None:
        self.lease_book.fence = fence

    async def heartbeat(self: _LeaseHost, replica: str, ttl: float, address: str | None = None) -> list[Replica]:
        self._writable()
        live = self.lease_book.heartbeat(self._clock(), replica, ttl, address)
        await asyncio.sleep(0)
        return live

    async def leave(self: _LeaseHost, replica: str) -> None:
        self._writable()
        self.lease_book.leave(self._clock(), replica)
        await asyncio.sleep(0)

    async def acquire(self: _LeaseHost, replica: str, webhooks: Sequence[str], ttl: float) -> dict[str, int]:
        self._writable()
        held = self.lease_book.acquire(self._clock(), replica, webhooks, ttl)
        await asyncio.sleep(0)
        return held

    async def release(self: _LeaseHost, replica: str, leases: Mapping[str, int]) -> None:
        self._writable()
        self.lease_book.release(self._clock(), replica, leases)
        await asyncio.sleep(0)

    async def valid(self: _LeaseHost, replica: str, leases: Mapping[str, int]) -> set[str]:
        self._readable()
        return self.lease_book.valid(self._clock(), replica, leases)

    async def leases(self: _LeaseHost) -> list[Lease]:
        self._readable()
        return self.lease_book.leases()

    async def watch_queues(self, callback: Callable[[Sequence[str] | None], None]) -> None:
        """One process has no other replica to hear from: nothing is kept and ``callback`` is never called."""
