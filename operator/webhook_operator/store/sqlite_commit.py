"""Group commit on one SQLite file: the concurrency behind ``store.sqlite``, which holds the SQL of each call.

sqlite3 blocks, so all writes run on one dedicated thread with one connection, and reads on another (WAL lets
readers proceed while the writer commits). Writes from concurrent callers are gathered into one transaction and
one fsync ("group commit"): under load, a thousand enqueues cost one commit, which is what makes per-event
durability affordable. Each operation runs in its own SAVEPOINT, so one failing operation (a bad row) does not fail
the others in its group; a failing COMMIT (disk full, I/O error) fails them all with StoreUnavailable, and nothing
was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from webhook_operator.store.base import StoreUnavailable
from webhook_operator.store.sqlite_schema import connect

T = TypeVar("T")
_Op = Callable[[sqlite3.Connection], Any]
_Write = tuple[_Op, "asyncio.Future[Any]", bool]  # op, its caller's future, durable

FILE_MODE = 0o600


def create_owner_only(path: str) -> None:
    """Create the store file readable by its owner only, before SQLite opens it, and tighten one left wider.

    The store holds every event body and the delivery log. SQLite creates new files 0644 (less the umask) and
    creates its ``-wal``, ``-journal`` and ``-shm`` files with the database file's permissions, so creating the
    database file 0600 first makes all of them 0600; an existing file (and companions) from an older version is
    chmod-ed. Setting the umask instead would change it for the whole process, threads included.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path + suffix, FILE_MODE)


class GroupCommit:
    """A writer and a reader connection to one file. ``commits`` counts transactions, so tests and benchmarks
    can see how well writes group.

    The writer is one long-lived thread fed by a ``queue.SimpleQueue``, not an executor: ``write()`` appends to a
    list and arms one ``loop.call_soon`` per loop turn, which hands everything written in that turn to the thread as
    one batch; the thread takes every batch waiting when it is free, runs them as one transaction and answers the
    whole transaction with one ``call_soon_threadsafe``. An executor hop per flush (a lock, a concurrent Future,
    a callback per result) was 4-6 % of the operator's CPU under one-event-per-POST load (docs/performance.md).
    Order is kept: batches run in the order they were queued, operations in the order ``write()`` was called.
    """

    def __init__(self, path: str, synchronous: str) -> None:
        self.path = path
        self._synchronous = synchronous
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="store-reader")
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[list[_Write] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._pending: list[_Write] = []
        self._armed = False  # a flush is scheduled for the end of this loop turn
        self._unanswered = 0  # writes handed to the thread whose futures are not resolved yet
        self._open = False
        self._current_sync = synchronous
        self.commits = 0

    async def open(self, schema: str) -> None:
        loop = asyncio.get_running_loop()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                create_owner_only(self.path)
            except OSError as exc:
                raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        opened: asyncio.Future[sqlite3.Connection] = loop.create_future()
        # A fresh queue per attempt: ``open`` is retried without ``close`` while the file cannot be opened.
        self._loop, self._stopped, self._queue = loop, loop.create_future(), queue.SimpleQueue()
        # A daemon: a store never closed must not keep the interpreter from exiting (WAL keeps the file whole).
        self._thread = threading.Thread(
            target=self._writer_thread, args=(loop, schema, opened), name="store-writer", daemon=True
        )
        self._thread.start()
        try:
            self._w = await opened
            self._r = await loop.run_in_executor(self._reader, connect, self.path, self._synchronous)
        except BaseException as exc:
            await self._stop_writer()  # no thread (and connection) left behind by a failed attempt
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
            raise
        self._open = True

    async def _stop_writer(self) -> None:
        if self._thread is not None:
            self._queue.put(None)  # the writer closes its connection and stops (or has stopped already)
            assert self._stopped is not None
            await self._stopped
            self._thread.join()
            self._thread = None

    async def close(self) -> None:
        self._flush()
        while self._pending or self._unanswered:  # noqa: ASYNC110 - shutdown only: let queued writes commit
            await asyncio.sleep(0.001)
        self._open = False  # later writes fail fast with StoreUnavailable instead of waiting forever
        await self._stop_writer()
        loop = asyncio.get_running_loop()
        if self._r is not None:
            await loop.run_in_executor(self._reader, self._r.close)
        self._w = self._r = None
        self._reader.shutdown(wait=True)

    async def write(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Queue ``op`` for the next group commit. ``durable=False`` marks bookkeeping whose loss on power failure
        costs at most a repeated delivery (completions, the log): a group made only of such ops commits without
        fsync, while any acknowledged write in the group makes the whole group (and the WAL before it) durable.
        The result (or the op's exception) comes back only once its transaction has committed."""
        if not self._open or self._loop is None:
            raise StoreUnavailable("store is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self._pending.append((op, future, durable))
        if not self._armed:
            self._armed = True
            self._loop.call_soon(self._flush)
        return await future

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._r is None:
            raise StoreUnavailable("store is not open")
        r = self._r
        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader, fn, r)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

    def _flush(self) -> None:
        """On the loop, once per turn with writes: hand this turn's writes to the writer thread as one batch."""
        self._armed = False
        if self._pending:
            batch, self._pending = self._pending, []
            self._unanswered += len(batch)
            self._queue.put(batch)

    def _writer_thread(self, loop: asyncio.AbstractEventLoop, schema: str, opened: asyncio.Future[Any]) -> None:
        try:
            conn = connect(self.path, self._synchronous)
            conn.executescript(schema)
        except BaseException as exc:
            _post(loop, _settle, opened, None, exc)
            _post(loop, _settle, self._stopped, None, None)
            return
        self._w = conn
        _post(loop, _settle, opened, conn, None)
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is None:
                    break
                batch = list(first)
                while True:  # every batch that queued up during the last commit joins this one
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.extend(more)
                try:
                    answer: list[tuple[bool, Any]] | BaseException = self._run_batch(
                        [op for op, _, _ in batch], any(d for _, _, d in batch)
                    )
                except sqlite3.Error as exc:
                    answer = StoreUnavailable(f"SQLite commit failed: {exc}")
                except Exception as exc:  # the thread must outlive it; its callers get it
                    answer = exc
                _post(loop, self._answer, batch, answer)
        finally:
            conn.close()
            _post(loop, _settle, self._stopped, None, None)

    def _answer(self, batch: list[_Write], answer: list[tuple[bool, Any]] | BaseException) -> None:
        """On the loop: resolve one transaction's futures (one callback per transaction, not per write)."""
        self._unanswered -= len(batch)
        if isinstance(answer, BaseException):
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(answer)
            return
        for (_, future, _), (ok, value) in zip(batch, answer, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _run_batch(self, ops: list[_Op], durable: bool) -> list[tuple[bool, Any]]:
        conn = self._w
        assert conn is not None
        results: list[tuple[bool, Any]] = []
        # WAL + NORMAL: no fsync per commit, never corrupt; a power cut may roll back the latest such commits.
        wanted = self._synchronous if durable else "NORMAL"
        if wanted != self._current_sync:  # only allowed outside a transaction
            conn.execute(f"PRAGMA synchronous={wanted}")
            self._current_sync = wanted
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                conn.execute("SAVEPOINT op")
                try:
                    results.append((True, op(conn)))
                    conn.execute("RELEASE op")
                except Exception as exc:  # one bad operation must not fail its whole group
                    if not conn.in_transaction:  # SQLITE_FULL or an I/O error rolled back the whole group:
                        raise  # it fails as one, as a failed COMMIT would
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
                        exc = StoreUnavailable(f"SQLite write failed: {exc}")  # disk full, I/O error: not the caller's
                    results.append((False, exc))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        return results


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """``call_soon_threadsafe`` from the writer thread, which must not die of a loop closed without ``close()``."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _settle(future: asyncio.Future[Any] | None, value: Any, error: BaseException | None) -> None:
    if future is None or future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
