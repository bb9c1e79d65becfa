"""The backends the store contract runs against, and the small builders its tests share.

A backend joins the contract by adding one ``Backend`` to ``BACKENDS``: how to build it, how to restart it on the
same data, and how to make it refuse writes. PostgreSQL runs on the session's real server (``support.postgres``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from support import postgres
from webhook_operator.store.base import AttemptOutcome, AttemptRecord, RoutedEvent, Store
from webhook_operator.store.memory import MemoryStore
from webhook_operator.store.postgres import PostgresStore
from webhook_operator.store.sqlite import SqliteStore

T0 = 1_700_000_000.0


class Clock:
    """A clock the test moves by hand, so arrival times and retention horizons are exact."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass(frozen=True)
class Backend:
    #: A new, unopened store keeping its data under ``tmp`` (if it keeps any there).
    make: Callable[[Path, Clock], Store]
    #: Close ``store`` and return a store opened on the same data, as after a process restart.
    reopen: Callable[[Store, Path, Clock], Awaitable[Store]]
    #: Make writes fail as on a full disk (True) or work again (False).
    outage: Callable[[Store, bool], Awaitable[None]]


async def _memory_reopen(store: Store, tmp: Path, clock: Clock) -> Store:
    await store.close()
    await store.open()  # a MemoryStore keeps its contents across close/open: the restart of a synced file
    return store


async def _memory_outage(store: Store, on: bool) -> None:
    cast(MemoryStore, store).fail_writes = on


async def _sqlite_reopen(store: Store, tmp: Path, clock: Clock) -> Store:
    await store.close()
    reopened = SqliteStore(tmp / "store.db", clock=clock)
    await reopened.open()
    return reopened


async def sqlite_disk_full(store: Store, on: bool) -> None:
    """SQLite's own way to run out of space: cap the file at the pages it has (a cap below that means "as is")."""
    limit = 1 if on else 2**31
    await cast(SqliteStore, store)._db.write(lambda conn: conn.execute(f"PRAGMA max_page_count={limit}"))


def _postgres_make(tmp: Path, clock: Clock, **kw: object) -> Store:
    """A fresh database on the session's server; its DSN is kept under ``tmp`` for ``reopen``."""
    dsn = postgres.fresh_database()
    (tmp / "postgres.dsn").write_text(dsn)
    return PostgresStore(dsn, clock=clock, **kw)  # type: ignore[arg-type]


async def _postgres_reopen(store: Store, tmp: Path, clock: Clock) -> Store:
    await store.close()
    reopened = PostgresStore((tmp / "postgres.dsn").read_text(), clock=clock)
    await reopened.open()
    return reopened


async def postgres_read_only(store: Store, on: bool) -> None:
    """PostgreSQL's way to refuse writes (a full disk, a primary demoted by a failover): the store's database turns
    read-only and its sessions are ended, so the pool reconnects and finds every write refused."""
    pg = cast(PostgresStore, store)
    await postgres.set_read_only(postgres.database_of(pg._db._dsn), on)
    await pg._db.expire()


BACKENDS: dict[str, Backend] = {
    "memory": Backend(lambda tmp, clock: MemoryStore(clock=clock), _memory_reopen, _memory_outage),
    "sqlite": Backend(lambda tmp, clock: SqliteStore(tmp / "store.db", clock=clock), _sqlite_reopen, sqlite_disk_full),
    "postgres": Backend(_postgres_make, _postgres_reopen, postgres_read_only),
}


def ev(i: int, *webhooks: str, body: bytes | None = None) -> RoutedEvent:
    return RoutedEvent(f"id-{i}", body if body is not None else f'{{"n":{i}}}'.encode(), list(webhooks))


def record(
    webhook: str,
    outcome: AttemptOutcome = AttemptOutcome.DELIVERED,
    *event_ids: str,
    started_at: float = T0,
    **kw: object,
) -> AttemptRecord:
    base: dict[str, object] = dict(
        webhook=webhook,
        delivery_id="d",
        event_ids=list(event_ids) or ["id-1"],
        attempt=1,
        started_at=started_at,
        duration_ms=1500.0,
        outcome=outcome,
    )
    base.update(kw)
    return AttemptRecord(**base)  # type: ignore[arg-type]


def budgeted(name: str, tmp: Path, clock: Clock, *, max_bytes: int) -> Store:
    """A new, unopened store of backend ``name`` with a space budget of ``max_bytes`` (issue 13, finding 4)."""
    if name == "memory":
        return MemoryStore(clock=clock, max_bytes=max_bytes)
    if name == "postgres":
        return _postgres_make(tmp, clock, max_bytes=max_bytes)
    return SqliteStore(tmp / "store.db", clock=clock, max_bytes=max_bytes)


@dataclass
class Harness:
    backend: Backend
    tmp: Path
    clock: Clock
    store: Store

    async def reopen(self) -> Store:
        self.store = await self.backend.reopen(self.store, self.tmp, self.clock)
        return self.store
