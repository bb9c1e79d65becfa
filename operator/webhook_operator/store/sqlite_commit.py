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
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from webhook_operator.store.base import StoreUnavailable
from webhook_operator.store.sqlite_schema import connect

T = TypeVar("T")
_Op = Callable[[sqlite3.Connection], Any]

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
    can see how well writes group."""

    def __init__(self, path: str, synchronous: str) -> None:
        self.path = path
        self._synchronous = synchronous
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="store-reader")
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self._pending: list[tuple[_Op, asyncio.Future[Any], bool]] = []
        self._wakeup: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._busy = False
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

        def setup() -> sqlite3.Connection:
            conn = connect(self.path, self._synchronous)
            conn.executescript(schema)
            return conn

        try:
            self._w = await loop.run_in_executor(self._writer, setup)
            self._r = await loop.run_in_executor(self._reader, connect, self.path, self._synchronous)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        self._wakeup = asyncio.Event()
        self._flusher = asyncio.create_task(self._flush_loop(), name="store-group-commit")

    async def close(self) -> None:
        if self._flusher is not None:
            while self._pending or self._busy:  # noqa: ASYNC110 - shutdown only: let queued writes commit
                await asyncio.sleep(0.001)
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        loop = asyncio.get_running_loop()
        if self._w is not None:
            await loop.run_in_executor(self._writer, self._w.close)
        if self._r is not None:
            await loop.run_in_executor(self._reader, self._r.close)
        self._w = self._r = None
        self._wakeup = None  # later writes fail fast with StoreUnavailable instead of waiting forever
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    async def write(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Queue ``op`` for the next group commit. ``durable=False`` marks bookkeeping whose loss on power failure
        costs at most a repeated delivery (completions, the log): a group made only of such ops commits without
        fsync, while any acknowledged write in the group makes the whole group (and the WAL before it) durable."""
        if self._wakeup is None:
            raise StoreUnavailable("store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future, durable))
        self._wakeup.set()
        return await future

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._r is None:
            raise StoreUnavailable("store is not open")
        r = self._r
        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader, fn, r)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

    async def _flush_loop(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            self._busy = True
            try:
                durable = any(d for _, _, d in batch)
                results = await loop.run_in_executor(self._writer, self._run_batch, [op for op, _, _ in batch], durable)
            except sqlite3.Error as exc:
                error = StoreUnavailable(f"SQLite commit failed: {exc}")
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            finally:
                self._busy = False
            for (_, future, _), (ok, value) in zip(batch, results, strict=True):
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
