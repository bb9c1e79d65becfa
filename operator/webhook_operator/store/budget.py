"""The SQLite store's space budget: measure live bytes cheaply, refuse new events over the budget.

Live bytes are the pages in use, ``(page_count - freelist_count) * page_size``. Not the file size: SQLite never
shrinks its file, it reuses the pages a prune freed, so a file that was once full would refuse forever after
retention made room. The WAL is not counted either; ``journal_size_limit`` keeps what it leaves behind after a
checkpoint small, and it lives in the headroom the budget leaves on the volume (20 % by default).

Measuring costs two PRAGMA reads of the header page. The writer thread does it inside ``enqueue`` only when the
estimate (the last measurement plus the bodies accepted since) reaches the budget or the last measurement is a
second old, so an enqueue far from the budget costs a clock read and an addition.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

from webhook_operator.store.base import SpaceBudget, StoreFull, StoreUsage

#: How long a measurement is trusted while the estimate stays below the budget.
TRUST_SECONDS = 1.0
#: The WAL is truncated to this after a checkpoint (it would otherwise keep its largest size on the volume).
WAL_SIZE_LIMIT = 64 * 1024 * 1024


def live_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def volume_bytes(path: str) -> int | None:
    """Size of the filesystem holding ``path`` (for a budget given as a fraction); None when unknown."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    return int(st.f_blocks * st.f_frsize)


class Budget:
    """Used by the writer thread only (no locks): ``check`` inside ``enqueue``, ``measure`` for ``usage``."""

    def __init__(self, path: str, budget: SpaceBudget | None, clock: Callable[[], float]) -> None:
        self._path = path
        self._budget = budget
        self._clock = clock
        self._used = 0
        self._since = 0  # bytes accepted since the last measurement (bodies and ids: a lower bound of growth)
        self._trusted_until = float("-inf")
        self._limit: int | None = None

    def usage(self, conn: sqlite3.Connection) -> StoreUsage:
        """Measure without touching the writer's bookkeeping (any connection, e.g. the reader's)."""
        volume = volume_bytes(self._path) if self._budget is not None and self._budget.fraction is not None else None
        return StoreUsage(live_bytes(conn), self._budget.limit(volume) if self._budget is not None else None)

    def measure(self, conn: sqlite3.Connection) -> StoreUsage:
        self._used = live_bytes(conn)
        self._since = 0
        if self._budget is not None:
            volume = volume_bytes(self._path) if self._budget.fraction is not None else None
            self._limit = self._budget.limit(volume)
        self._trusted_until = self._clock() + TRUST_SECONDS
        return StoreUsage(self._used, self._limit)

    def check(self, conn: sqlite3.Connection, incoming: int) -> None:
        """Raise ``StoreFull`` when the store is over its budget; count ``incoming`` bytes as accepted otherwise."""
        if self._budget is None:
            return
        limit = self._limit
        if self._clock() >= self._trusted_until or (limit is not None and self._used + self._since >= limit):
            usage = self.measure(conn)
            if usage.over:
                raise StoreFull(usage)
        self._since += incoming
