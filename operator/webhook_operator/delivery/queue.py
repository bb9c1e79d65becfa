"""The in-memory head of one webhook's durable queue.

The store holds the truth; this mirrors the head so the hot path never reads the database, and pages a long
backlog in from the store (``PAGE`` entries at a time) instead of holding all of it in memory. Entries committed
while a backlog is still on disk are left there and paged in behind it, so order is the store's order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from webhook_operator.store.base import LaneStore, QueuedEvent

PAGE = 1000


class LaneQueue:
    def __init__(self, page: Sequence[QueuedEvent], total: int) -> None:
        self._entries: deque[QueuedEvent] = deque(page)
        #: Every entry of this webhook still queued in the store, in memory or not (status ``pending``).
        self.total = total
        self._last_qid = page[-1].qid if page else 0
        #: True while older entries than the in-memory tail are still only on disk.
        self._more_on_disk = total > len(page)
        #: Set when entries were committed during a page read: the read may have missed them, so read again.
        self._disk_dirty = False

    @classmethod
    async def load(cls, store: LaneStore, webhook: str, total: int) -> LaneQueue:
        return cls(await store.pending(webhook, 0, PAGE), total)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def needs_page(self) -> bool:
        return not self._entries and self._more_on_disk

    @property
    def oldest_received_at(self) -> float | None:
        return self._entries[0].received_at if self._entries else None

    def append(self, entries: Sequence[QueuedEvent]) -> None:
        """Newly committed entries. A page read can see a commit before the submitter that made it resumes, so
        entries already paged in are not taken twice."""
        self.total += len(entries)
        if self._more_on_disk:
            self._disk_dirty = True
            return
        fresh = [e for e in entries if e.qid > self._last_qid]
        if fresh:
            self._entries.extend(fresh)
            self._last_qid = fresh[-1].qid

    async def page_in(self, store: LaneStore, webhook: str) -> None:
        self._disk_dirty = False
        page = await store.pending(webhook, self._last_qid, PAGE)
        self._entries.extend(page)
        if page:
            self._last_qid = page[-1].qid
        if len(page) < PAGE and not self._disk_dirty:
            self._more_on_disk = False

    def head(self, size: int) -> list[QueuedEvent]:
        return [self._entries[i] for i in range(min(size, len(self._entries)))]

    def find(self, qids: Sequence[int]) -> list[QueuedEvent] | None:
        """The entries with these qids, in queue order; None unless all of them are in memory."""
        wanted = set(qids)
        found = [e for e in self._entries if e.qid in wanted]
        return found if len(found) == len(wanted) else None

    def moved_out(self, up_to_qid: int, count: int) -> None:
        """Every entry the store held for this webhook left in one commit (handed to its fallback): ``count`` of
        them, all committed before the entry ``up_to_qid`` that commit created. Entries committed after it (and so
        with higher qids) may already be here, and stay."""
        self._entries = deque(e for e in self._entries if e.qid > up_to_qid)
        self.total = max(0, self.total - count)

    def remove(self, batch: Sequence[QueuedEvent]) -> None:
        done = {e.qid for e in batch}
        popped = 0
        while self._entries and self._entries[0].qid in done:
            self._entries.popleft()
            popped += 1
        if popped < len(done):  # not at the head (never expected): remove the rest wherever they are
            self._entries = deque(e for e in self._entries if e.qid not in done)
        self.total = max(0, self.total - len(batch))
