"""The work-sharing part of the store protocol (issue 15): liveness, one lease per webhook, the fence every lane
write is checked against, and cross-replica wake-ups. Split from ``base`` to keep each protocol module readable;
``base.Store`` includes it and ``base`` re-exports its names."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class LeaseLost(RuntimeError):
    """This replica no longer holds the webhook's lease (it expired, and another replica may have taken it): the
    write was not made. The lane stops at once; the webhook's queue and retry state are the new owner's."""


@dataclass(frozen=True)
class Replica:
    """An operator replica that sent a heartbeat within its time to live."""

    replica_id: str
    heartbeat_at: float  # store clock (PostgreSQL: the database's clock), epoch seconds
    address: str | None = None  # where its operations API answers (``host:port``), when it advertised one


@dataclass(frozen=True)
class Lease:
    """Who delivers a webhook now. ``token`` grows with every acquisition (never with a renewal), across all
    webhooks and replicas: it is the fencing token every lane write and status claim is checked against."""

    webhook: str
    owner: str
    token: int
    expires_at: float  # store clock, epoch seconds


class Fence(Protocol):
    """The leases this replica believes it holds. A store with a fence set checks, inside the transaction of every
    lane write (``complete``, ``fail``, ``save_retry_state``, ``skip``, ``dead_letter``, ``hand_over``,
    ``requeue``), that the webhook's lease row still names ``replica`` with ``token(webhook)`` and has not expired by
    the store's clock; otherwise nothing is written and ``LeaseLost`` is raised. ``token`` None: not held."""

    @property
    def replica(self) -> str: ...

    def token(self, webhook: str) -> int | None: ...


class LeaseStore(Protocol):
    """Work sharing between replicas (issue 15): liveness, one lease per webhook, fencing, cross-replica wake-up.
    Times are the store's clock (PostgreSQL: the database server's), so replicas' clocks never need to agree."""

    def set_fence(self, fence: Fence | None) -> None:
        """Check every later lane write against ``fence`` (None: no checks, a single process owning everything)."""
        ...

    async def heartbeat(self, replica: str, ttl: float, address: str | None = None) -> list[Replica]:
        """Record that ``replica`` is alive for ``ttl`` seconds more; return every live replica (itself
        included), sorted by id."""
        ...

    async def leave(self, replica: str) -> None:
        """A clean shutdown: drop ``replica`` from the live set and expire all its leases now."""
        ...

    async def acquire(self, replica: str, webhooks: Sequence[str], ttl: float) -> dict[str, int]:
        """Take or renew the leases of ``webhooks`` for ``ttl`` seconds: a lease that is free, expired or already
        ``replica``'s becomes (stays) its. A new acquisition gets a new token (larger than every token handed out
        before); a renewal keeps its token. Returns webhook → token for every one of ``webhooks`` it holds now."""
        ...

    async def release(self, replica: str, leases: Mapping[str, int]) -> None:
        """Give leases up (expire them now), each only if it is still ``replica``'s with that token."""
        ...

    async def valid(self, replica: str, leases: Mapping[str, int]) -> set[str]:
        """The status claim: which of ``leases`` are still ``replica``'s with that token and unexpired, now."""
        ...

    async def leases(self) -> list[Lease]:
        """Every lease row (observability and tests), sorted by webhook."""
        ...

    async def watch_queues(self, callback: Callable[[Sequence[str] | None], None]) -> None:
        """Call ``callback`` with the webhooks whose queues another replica changed (None: any may have). A
        single-process backend has no other replica and never calls it."""
        ...
