"""The in-memory head of one webhook's durable queue.

The store holds the truth; this mirrors the head so the hot path never reads the database, and pages a long
backlog in from the store (``PAGE`` entries at a time) instead of holding all of it in memory. Entries committed
while a backlog is still on disk are left there and paged in behind it, so order is the store's order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

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


#: Most entries a parallel lane keeps in memory while paging: held keys' later events wait in memory, and a key held
#: for long must not pull a whole backlog in behind it (events beyond stay on disk until it moves again).
KEYED_MEMORY = 20 * PAGE


class KeyedQueue(LaneQueue):
    """The in-memory head of a lane that delivers in parallel (ordering entity or none), indexed by ordering key.

    ``take`` hands out the oldest waiting entries of the first ready key (round robin: a key that just sent goes to
    the back). With ``per_key`` (ordering entity) a key is *blocked* while one of its batches is in flight or held,
    so its events leave one batch at a time and in order; without (ordering none) every entry is of the one key
    ``""``, never blocked. Entries stay in memory (``find``) until delivered, skipped or dead-lettered; an entry a
    restored hold names (``reserve``) never waits under its key: it goes out only as part of that frozen batch."""

    def __init__(self, page: Sequence[QueuedEvent], total: int, key_of: Callable[[QueuedEvent], str], *,
                 per_key: bool, holds: Sequence[tuple[str, Sequence[int]]] = (),
                 shared: bool = False) -> None:  # fmt: skip
        super().__init__((), total)
        #: Work sharing: every entry is read from the store in qid order (see ``shared_lanes.SharedLaneQueue``).
        self._shared = shared
        self._key_of = key_of if per_key else (lambda _entry: "")
        self._per_key = per_key
        self._live: dict[int, QueuedEvent] = {}
        self._order: deque[int] = deque()  # qids in queue order, cleaned lazily (oldest_received_at)
        self._waiting: dict[str, deque[QueuedEvent]] = {}
        self._ready: dict[str, None] = {}  # keys that may send now, in turn order
        self._blocked: set[str] = set()
        self._reserved: set[int] = set()
        self._more_on_disk = total > len(page)
        for key, qids in holds:  # before the page goes in: a held batch's entries never wait under their key
            self.block(key)
            self.reserve(qids)
        self._add(page)

    @classmethod
    async def load_keyed(cls, store: LaneStore, webhook: str, total: int, key_of: Callable[[QueuedEvent], str], *,
                         per_key: bool, holds: Sequence[tuple[str, Sequence[int]]] = (),
                         shared: bool = False) -> KeyedQueue:  # fmt: skip
        page = await store.pending(webhook, 0, PAGE)
        if shared and len(page) < PAGE:  # a short first page is the whole queue: a better count
            total = len(page)
        return cls(page, total, key_of, per_key=per_key, holds=holds, shared=shared)

    def _add(self, entries: Sequence[QueuedEvent]) -> None:
        for entry in entries:
            qid = entry.qid
            if qid <= self._last_qid:
                continue
            self._last_qid = qid
            self._live[qid] = entry
            self._order.append(qid)
            if qid in self._reserved:
                continue
            key = self._key_of(entry)
            waiting = self._waiting.get(key)
            if waiting is None:
                waiting = self._waiting[key] = deque()
            waiting.append(entry)
            if key not in self._blocked:
                self._ready[key] = None

    def __len__(self) -> int:
        return len(self._live)

    @property
    def needs_page(self) -> bool:
        return self._more_on_disk and not self._ready and len(self._live) < KEYED_MEMORY

    def wants_page(self, ready_below: int) -> bool:
        """More is on disk and fewer than ``ready_below`` keys could send now: read the next page."""
        return self._more_on_disk and len(self._ready) < ready_below and len(self._live) < KEYED_MEMORY

    @property
    def on_disk(self) -> bool:
        """Whether entries of this webhook may still be only on disk (a restored hold may be among them)."""
        return self._more_on_disk

    @property
    def ready(self) -> bool:
        return bool(self._ready)

    @property
    def oldest_received_at(self) -> float | None:
        order, live = self._order, self._live
        while order and order[0] not in live:
            order.popleft()
        return live[order[0]].received_at if order else None

    def append(self, entries: Sequence[QueuedEvent]) -> None:
        if self._shared:
            fresh = sum(1 for e in entries if e.qid > self._last_qid)
            if fresh:
                self.total += fresh
                self.changed_elsewhere()
            return
        self.total += len(entries)
        if self._more_on_disk:
            self._disk_dirty = True
            return
        self._add(entries)

    def changed_elsewhere(self) -> None:
        """Work sharing: the store may hold entries not read yet (another replica's commit): read them in order."""
        self._more_on_disk = True
        self._disk_dirty = True

    async def page_in(self, store: LaneStore, webhook: str) -> None:
        self._disk_dirty = False
        page = await store.pending(webhook, self._last_qid, PAGE)
        self._add(page)
        if len(page) < PAGE and not self._disk_dirty:
            self._more_on_disk = False
            if self._shared:  # memory holds every entry still queued
                self.total = len(self._live)

    def take(self, size: int) -> tuple[str, list[QueuedEvent]] | None:
        """The next batch: (its key, up to ``size`` of that key's oldest waiting entries); None if no key may send."""
        while self._ready:
            key = next(iter(self._ready))
            waiting = self._waiting[key]
            batch: list[QueuedEvent] = []
            while waiting and len(batch) < size:
                entry = waiting.popleft()
                if entry.qid in self._live:  # else dead-lettered by the queue limits while it waited
                    batch.append(entry)
            if not waiting:
                del self._waiting[key]
            if self._per_key or not waiting:
                del self._ready[key]
            if batch:
                if self._per_key:
                    self._blocked.add(key)
                return key, batch
        return None

    def block(self, key: str) -> None:
        """``key`` has a batch held (restored after a restart): its other entries wait."""
        if self._per_key:
            self._blocked.add(key)
            self._ready.pop(key, None)

    def release(self, key: str) -> None:
        """``key``'s batch is done (delivered or dropped): its next entries may go, after the other ready keys."""
        self._blocked.discard(key)
        if key in self._waiting:
            self._ready[key] = None

    def reserve(self, qids: Sequence[int]) -> None:
        """Entries of a restored hold: they go out only as that frozen batch, never under their key."""
        self._reserved.update(qids)

    def put_back(self, key: str, entries: Sequence[QueuedEvent]) -> None:
        """Entries that were taken but not sent (a frozen batch cut to a lower batchSize, the rest of a batch with an
        event that cannot be decoded) wait again at the front of their key, in order."""
        self._reserved.difference_update(e.qid for e in entries)
        waiting = self._waiting.setdefault(key, deque())
        waiting.extendleft(reversed([e for e in entries if e.qid in self._live]))
        if key not in self._blocked and waiting:
            self._ready[key] = None

    def head(self, size: int) -> list[QueuedEvent]:
        out: list[QueuedEvent] = []
        for qid in self._order:
            if len(out) >= size:
                break
            entry = self._live.get(qid)
            if entry is not None:
                out.append(entry)
        return out

    def find(self, qids: Sequence[int]) -> list[QueuedEvent] | None:
        found = [self._live[q] for q in sorted(qids) if q in self._live]
        return found if len(found) == len(qids) else None

    def found(self, qids: Sequence[int]) -> list[QueuedEvent]:
        """Those of ``qids`` in memory, in queue order."""
        return [self._live[q] for q in sorted(qids) if q in self._live]

    def moved_out(self, up_to_qid: int, count: int) -> None:
        """Everything up to ``up_to_qid`` went to the fallback (holds with it): start over with what is left."""
        rest = [e for q, e in self._live.items() if q > up_to_qid]
        self._live, self._order, self._waiting, self._ready = {}, deque(), {}, {}
        self._blocked.clear()
        self._reserved.clear()
        last, self._last_qid = self._last_qid, 0
        self._add(rest)
        self._last_qid = max(last, self._last_qid)
        self.total = max(0, self.total - count)

    def remove(self, batch: Sequence[QueuedEvent]) -> None:
        live = self._live
        for entry in batch:
            live.pop(entry.qid, None)
            self._reserved.discard(entry.qid)
        self.total = max(0, self.total - len(batch))
