"""Unrouted events (issue 15, intake availability): accepted before the Webhook list is known, routed once it is.

An operator that starts while the Kubernetes API server is unreachable cannot know which webhooks an event goes
to, but it can still accept the event durably: the store keeps it like any other (same ``events`` table, so a
duplicate id is accepted once whether its first copy was routed or not) with an *unrouted* mark instead of queue
entries. Once the list is known, ``route_unrouted`` turns the oldest marks into queue entries, chunk by chunk, each
chunk one commit that creates the entries and clears the marks, so a crash in between neither loses nor duplicates.

Order: while any event waits unrouted, an event the intake routes with ``Routing.BEHIND_UNROUTED`` is stored
unrouted too, in the same transaction that checks, so no new event can overtake an older unrouted one for the same
webhook — also across replicas sharing a PostgreSQL database, where the check and the routing run under the queue
lock (``postgres_schema.QUEUE_LOCK``) that orders every transaction creating queue entries.

The per-backend parts live next to this module (``unrouted_memory``, ``unrouted_sqlite``, ``unrouted_postgres``);
this one holds what they share: the routing modes, the protocol and the schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # ``store.base`` imports this module: the types are for annotations only
    from webhook_operator.store.base import EnqueueResult, QueuedEvent


class Routing(StrEnum):
    """How ``IntakeStore.enqueue`` treats the webhooks its events name."""

    #: Queue each event for the webhooks it names (trigger events, tests, stores without an intake gap).
    GIVEN = "given"
    #: As ``GIVEN``, unless events wait unrouted: then these are stored unrouted behind them (the intake, once the
    #: Webhook list is known).
    BEHIND_UNROUTED = "behindUnrouted"
    #: Store every event unrouted, whatever it names (the intake before the Webhook list is known).
    UNROUTED = "unrouted"


def parks(routing: Routing, waiting: bool) -> bool:
    """Whether an ``enqueue`` with ``routing`` stores its events unrouted, ``waiting`` being whether unrouted
    events are stored now (read in the same transaction)."""
    return routing is Routing.UNROUTED or (routing is Routing.BEHIND_UNROUTED and waiting)


#: The chunk ``route_unrouted`` callers take by default: one commit of a few hundred queue entries.
CHUNK = 500


class UnroutedStore(Protocol):
    """The store side of deferred routing. Marks are cleared only by ``route_unrouted`` (an unrouted event is never
    pruned: retention keeps it like a queued one)."""

    async def unrouted(self, limit: int = CHUNK) -> list[QueuedEvent]:
        """The oldest ``limit`` unrouted events in arrival order (``qid`` 0). A read: nothing changes."""
        ...

    async def route_unrouted(self, routes: Sequence[tuple[int, Sequence[str]]]) -> EnqueueResult:
        """Route unrouted events: for each ``(seq, webhooks)``, in the given order, queue the event for each webhook
        and clear its mark — one commit. An event that is no longer unrouted (another replica routed it) is left
        out: ``seqs`` has None there and nothing is queued for it. ``queued`` holds the new entries per webhook."""
        ...

    async def unrouted_count(self) -> int:
        """How many events wait unrouted (readiness, tests)."""
        ...


#: SQLite: created with the rest of the schema (``sqlite_schema.SCHEMA``); the rowid is the event's seq, so the
#: table's order is arrival order.
SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS unrouted (
    seq INTEGER PRIMARY KEY
);
"""

#: PostgreSQL: migration 3 (``postgres_schema.MIGRATIONS[2]``).
POSTGRES_MIGRATION = """
    -- Events accepted before the Webhook list was known (intake availability): routed in seq order, then deleted.
    CREATE TABLE unrouted (
        seq BIGINT PRIMARY KEY
    );
    """
