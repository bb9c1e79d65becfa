"""The connection pool behind ``store.postgres``: error mapping, ordered group commit, and the space budget.

Most calls are one statement (data-modifying CTEs make a whole ``complete`` or ``skip`` one atomic statement and
one round trip) on any pooled connection. Calls that create queue entries (``enqueue``, ``requeue``) go through one
flusher task instead, like SQLite's writer thread: concurrent calls are gathered into one transaction (one commit,
one WAL flush for a burst of posts), each in its own savepoint so one bad call fails alone, and their results are
handed back in commit order. The transaction first takes the ``QUEUE_LOCK`` advisory lock, so qids are allocated in
commit order across every replica sharing the database: a queue read with an ``after_qid`` cursor can never have
a smaller qid commit behind it, which is what per-webhook FIFO needs. A failing COMMIT fails every call of the
group with ``StoreUnavailable``; nothing was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from webhook_operator.store.base import (
    EnqueueResult,
    Fence,
    RoutedEvent,
    SpaceBudget,
    StoreFull,
    StoreUnavailable,
    StoreUsage,
)
from webhook_operator.store.postgres_notify import CHANNEL, Callback, QueueWatcher, connect_listener, payload
from webhook_operator.store.postgres_schema import (
    QUEUE_LOCK,
    dsn_password,
    is_unavailable,
    mask_dsn,
    migrate,
    scrub,
    unavailable,
)
from webhook_operator.store.unrouted import Routing

T = TypeVar("T")
_Op = Callable[[Any], Awaitable[Any]]


class _PoolFloorWithoutTraceback(logging.Filter):
    """asyncpg (0.32) logs every failed attempt to restore the pool's minimum connections as a WARNING with a full
    traceback: while the database is down, one traceback per replica every few seconds, for an outage the store
    already reports (``StoreUnavailable``, the intake's 503). Keep the line, name the cause, drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()} ({type(record.exc_info[1]).__name__})"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


logging.getLogger("asyncpg.pool").addFilter(_PoolFloorWithoutTraceback())


class Pool:
    """An asyncpg pool with the store's error policy: every failure that means "the database cannot take this
    now" becomes ``StoreUnavailable`` with the DSN's password scrubbed from its message."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, connect_timeout: float = 10.0,
                 command_timeout: float = 60.0) -> None:  # fmt: skip
        self._dsn = dsn
        self._password = dsn_password(dsn)
        self.masked_dsn = mask_dsn(dsn)
        self._min, self._max, self._timeout = min_size, max_size, connect_timeout
        # A database that stops answering without closing the connection (a partition, a frozen primary) must
        # turn into StoreUnavailable (503), not an intake that hangs: no statement of ours takes this long.
        self._command_timeout = command_timeout
        self._pool: Any = None
        self._pending: list[tuple[_Op, asyncio.Future[Any]]] = []
        self._wakeup: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._busy = False
        self.commits = 0  # ordered group commits so far (tests and benchmarks)
        self.migrated: list[int] = []  # migrations this process applied at open
        self._touched: set[str] = set()  # webhooks the running group commit queued entries for (NOTIFY)
        self._watcher: QueueWatcher | None = None  # LISTEN for other replicas' queue changes (``watch``)

    def _error(self, exc: BaseException, what: str) -> StoreUnavailable:
        return unavailable(exc, what, self._password)

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._min, max_size=self._max, timeout=self._timeout,
                command_timeout=self._command_timeout,
            )  # fmt: skip
            async with self._pool.acquire() as conn:
                self.migrated = await migrate(conn)
        except StoreUnavailable:
            await self._abandon()
            raise
        except Exception as exc:  # a bad DSN, refused, wrong password, timeout: all "cannot open"
            await self._abandon()
            raise StoreUnavailable(
                scrub(f"cannot open PostgreSQL store {self.masked_dsn}: {type(exc).__name__}: {exc}", self._password)
            ) from None  # the driver's exception may carry the DSN; never chain it
        self._wakeup = asyncio.Event()
        self._flusher = asyncio.create_task(self._flush_loop(), name="store-group-commit")

    async def _abandon(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    async def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await watcher.close()
        if self._flusher is not None:
            while self._pending or self._busy:  # noqa: ASYNC110 - shutdown only: let queued writes commit
                await asyncio.sleep(0.001)
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        self._wakeup = None
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):  # a database already gone has nothing left to flush
                await asyncio.wait_for(pool.close(), timeout=10)
            pool.terminate()

    async def expire(self) -> None:
        """Replace every pooled connection on its next use (after a failover, or session settings changed)."""
        if self._pool is not None:
            await self._pool.expire_connections()

    async def run(self, fn: Callable[[Any], Awaitable[T]], what: str = "query") -> T:
        """``fn(connection)`` on a pooled connection; one statement is one atomic transaction."""
        async with self._connection() as conn:
            try:
                return await fn(conn)
            except Exception as exc:
                if is_unavailable(exc):
                    raise self._error(exc, what) from None
                raise

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection. Any failure to get one (refused, timed out, too many clients, a database that
        does not accept connections now, whatever its SQLSTATE) is ``StoreUnavailable``."""
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("store is not open")
        try:
            conn = await pool.acquire()
        except Exception as exc:
            raise self._error(exc, "connect") from None
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):  # a broken connection is dropped from the pool; nothing to tell
                await pool.release(conn)

    async def transaction(self, fn: Callable[[Any], Awaitable[T]], what: str = "write") -> T:
        """``fn(connection)`` inside one transaction (several statements that must commit together)."""

        async def op(conn: Any) -> T:
            async with conn.transaction():
                return await fn(conn)

        return await self.run(op, what)

    def touch(self, webhooks: Iterable[str]) -> None:
        """An ordered call added queue entries for ``webhooks``: its group commit will notify other replicas."""
        self._touched.update(webhooks)

    async def watch(self, callback: Callback) -> None:
        """Call ``callback`` with the webhooks other replicas' commits queued entries for (``postgres_notify``)."""
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        if self._watcher is None:
            self._watcher = QueueWatcher(lambda: connect_listener(self._dsn, self._timeout))
        await self._watcher.add(callback)

    async def ordered(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Queue ``fn`` for the next ordered group commit (calls that create queue entries)."""
        if self._wakeup is None:
            raise StoreUnavailable("store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        self._wakeup.set()
        return await future

    async def _flush_loop(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            self._busy = True
            try:
                results = await self._run_batch([op for op, _ in batch])
            except Exception as exc:
                error = self._error(exc, "commit") if is_unavailable(exc) else exc
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            finally:
                self._busy = False
            for (_, future), (ok, value) in zip(batch, results, strict=True):
                if not future.done():
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)

    async def _run_batch(self, ops: list[_Op]) -> list[tuple[bool, Any]]:
        async def group(conn: Any) -> list[tuple[bool, Any]]:
            results: list[tuple[bool, Any]] = []
            self._touched = set()
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", QUEUE_LOCK)
                for op in ops:
                    try:
                        async with conn.transaction():  # a savepoint: one bad call must not fail its group
                            results.append((True, await op(conn)))
                    except Exception as exc:
                        if is_unavailable(exc) and conn.is_closed():
                            raise  # the connection is gone: the group fails as one, as a failed COMMIT would
                        if is_unavailable(exc):
                            exc = self._error(exc, "write")
                        results.append((False, exc))
                if self._touched:  # one notification per commit, delivered only if it commits
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload(self._touched))
            return results

        async with self._connection() as conn:
            results = await group(conn)
        self.commits += 1
        return results


class Budget:
    """The space budget (``--store-max-bytes``) over live event bytes (ids and bodies, as the in-memory store
    counts them). PostgreSQL's files keep dead rows until vacuum, and a share of "the volume" means nothing for a
    remote or managed database, so only a fixed byte budget applies, and what it is compared with is the
    ``store_stats.event_bytes`` counter: kept by the same transactions that insert events (``enqueue``, under the
    queue lock) and delete them (``prune``, under the queue lock too), so it is exact across replicas and reading it
    costs one row, not a scan of the events (``/metrics`` reads it on every scrape)."""

    def __init__(self, budget: SpaceBudget | None) -> None:
        self._limit = budget.max_bytes if budget is not None else None

    async def measure(self, conn: Any) -> StoreUsage:
        used = await conn.fetchval("SELECT event_bytes FROM store_stats")
        return StoreUsage(int(used or 0), self._limit)

    async def check(self, conn: Any) -> None:
        """Raise ``StoreFull`` when over the budget. Called under the queue lock, so no replica is adding at the
        same moment: the number read is the number that is true."""
        if self._limit is not None and (usage := await self.measure(conn)).over:
            raise StoreFull(usage)


@dataclass
class EnqueueCall:
    """One caller's enqueue, waiting to be coalesced with the others into the next ordered commit."""

    events: Sequence[RoutedEvent]
    received_at: float
    result: EnqueueResult | None = None
    routing: Routing = Routing.GIVEN


@dataclass
class EnqueueDrain:
    """The calls one ordered commit takes. Calls join it until it starts; if it fails, even before it started,
    exactly its calls fail with it (a call never moves to a later drain after its caller was told it failed)."""

    calls: list[EnqueueCall] = field(default_factory=list)
    started: bool = False
    future: asyncio.Future[None] | None = None


class PgBase:
    """The pool and clock every role shares: the constructor of ``PostgresStore`` lives here."""

    def __init__(self, dsn: str, *, clock: Callable[[], float] = time.time, max_bytes: int | None = None,
                 budget: SpaceBudget | None = None, min_connections: int = 1, max_connections: int = 10,
                 connect_timeout: float = 10.0) -> None:  # fmt: skip
        self._clock = clock
        self._db = Pool(dsn, min_size=min_connections, max_size=max_connections, connect_timeout=connect_timeout)
        if budget is None and max_bytes is not None:
            budget = SpaceBudget(max_bytes=max_bytes)
        self._budget = Budget(budget)
        self._drain: EnqueueDrain | None = None  # the enqueue drain new calls join, until it starts
        self._fence: Fence | None = None  # lane writes are checked against it (``postgres_leases``)

    def __repr__(self) -> str:
        return f"PostgresStore({self._db.masked_dsn})"
