"""When may each webhook's status be patched? Debouncing, coalescing, a global rate cap and retry backoff (pure).

Time comes in as arguments, so every rule here is unit-tested with a fake clock; ``writer`` drives it.

Rules, per webhook (``interval`` = the minimum spacing of two patches of the same webhook):

* Coalescing: a webhook has at most one pending write. Changes that arrive while a write is pending or in flight
  only bump its version; the write that eventually goes out carries the latest state (computed at send time).
* Leading edge for transitions: an *urgent* change (the status enum, configuration problem, warnings or
  generation differ from what was last written — i.e. what ``kubectl get`` shows would change meaningfully) is due
  at once if the last patch was at least ``interval`` ago, else at ``last patch + interval``.
* Trailing edge for counters: a non-urgent change (counters, timestamps, messages) is due ``interval`` after the
  *first* unwritten change, and never earlier than ``last patch + interval``. A stream of deliveries therefore
  costs one patch per ``interval`` with bounded staleness, instead of a patch for the first delivery plus one for
  the rest.
* Transient failures back off per webhook (``backoff_initial`` doubling to ``backoff_max``); the desired state is
  kept, so the status catches up once the API server answers again.

Globally, a token bucket caps patches per second (burst: one second's worth). Due webhooks wait in a heap ordered
by due time, so under the cap the one that has waited longest goes first and a busy webhook, whose next write is
due only ``interval`` after its last, goes to the back of the line: round-robin across webhooks.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from enum import Enum


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float | None = None, *, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._tokens = self.burst
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def try_take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0 if one is)."""
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate


class PatchOutcome(Enum):
    """How one status patch went (``kube.classify`` judges Event calls with it too); named apart from the
    delivery's ``Outcome`` (``delivery.sender``), which it has nothing to do with."""

    WRITTEN = "written"  # the API accepted the patch
    UNCHANGED = "unchanged"  # nothing to send: desired equals what was last written
    REJECTED = "rejected"  # the API refused this body (400/422); do not resend it until it changes
    GONE = "gone"  # 404: the resource is deleted
    RETRY = "retry"  # connection error, 5xx, 429, ...: keep the state and try again later


@dataclass
class _Slot:
    due: float | None = None  # None: nothing to write
    dirty_since: float | None = None
    version: int = 0  # bumped by every change
    last_patch: float | None = None
    failures: int = 0
    retry_at: float = 0.0
    in_flight: bool = False


class Scheduler:
    def __init__(
        self,
        interval: float = 2.0,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
    ) -> None:
        if interval < 0:
            raise ValueError("interval must not be negative")
        self.interval = interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._slots: dict[str, _Slot] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()

    def __contains__(self, key: str) -> bool:
        return key in self._slots

    def failures(self, key: str) -> int:
        slot = self._slots.get(key)
        return slot.failures if slot else 0

    def _push(self, key: str, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), key))

    def _floor(self, slot: _Slot) -> float:
        """The earliest time this webhook may be patched again."""
        spaced = slot.last_patch + self.interval if slot.last_patch is not None else float("-inf")
        return max(spaced, slot.retry_at)

    def mark(self, key: str, now: float, *, urgent: bool) -> float | None:
        """Record a change; returns the new due time if it moved earlier (None if unchanged). Never postpones a
        write that is already scheduled (bounded staleness)."""
        slot = self._slots.setdefault(key, _Slot())
        slot.version += 1
        if slot.dirty_since is None:
            slot.dirty_since = now
        base = now if urgent else slot.dirty_since + self.interval
        due = max(base, self._floor(slot))
        if slot.due is None or due < slot.due:
            slot.due = due
            if not slot.in_flight:
                self._push(key, due)
                return due
        return None

    def forget(self, key: str) -> None:
        self._slots.pop(key, None)  # heap entries go stale and are skipped

    def _top(self) -> tuple[float, str] | None:
        while self._heap:
            due, _, key = self._heap[0]
            slot = self._slots.get(key)
            if slot is None or slot.in_flight or slot.due != due:
                heapq.heappop(self._heap)
                continue
            return due, key
        return None

    def next_due(self) -> float | None:
        top = self._top()
        return top[0] if top else None

    def pop_due(self, now: float) -> str | None:
        """The webhook that has been due the longest, or None. Call ``begin`` or ``requeue`` next."""
        top = self._top()
        if top is None or top[0] > now:
            return None
        heapq.heappop(self._heap)
        return top[1]

    def requeue(self, key: str) -> None:
        """Put a popped webhook back unchanged (e.g. no token left)."""
        slot = self._slots.get(key)
        if slot is not None and slot.due is not None and not slot.in_flight:
            self._push(key, slot.due)

    def pending(self) -> list[str]:
        """Webhooks with an unwritten change, in flight or not."""
        return [k for k, s in self._slots.items() if s.due is not None]

    def ready(self, now: float) -> list[str]:
        """Webhooks a flush may write now regardless of spacing: changed, not in flight, not backing off."""
        return [k for k, s in self._slots.items() if s.due is not None and not s.in_flight and s.retry_at <= now]

    def next_retry(self) -> float | None:
        """When the earliest backing-off webhook may be tried again."""
        times = [s.retry_at for s in self._slots.values() if s.due is not None and not s.in_flight and s.failures]
        return min(times, default=None)

    def begin(self, key: str) -> int:
        """A write of ``key`` starts; returns the version it carries."""
        slot = self._slots[key]
        slot.in_flight = True
        return slot.version

    def finish(self, key: str, now: float, version: int, outcome: PatchOutcome) -> None:
        """Account for a write (or a skipped one) that carried ``version``."""
        slot = self._slots.get(key)
        if slot is None:
            return
        if outcome is PatchOutcome.GONE:
            del self._slots[key]
            return
        slot.in_flight = False
        if outcome is PatchOutcome.RETRY:
            slot.failures += 1
            delay = min(self.backoff_max, self.backoff_initial * 2 ** (slot.failures - 1))
            slot.retry_at = now + delay
            slot.due = max(slot.due or now, slot.retry_at)
            self._push(key, slot.due)
            return
        slot.failures = 0
        slot.retry_at = 0.0
        if outcome is not PatchOutcome.UNCHANGED:
            slot.last_patch = now
        if slot.version == version:
            slot.due = slot.dirty_since = None
            return
        # Changed while in flight: write again, no sooner than the spacing allows.
        slot.dirty_since = now
        slot.due = max(slot.due if slot.due is not None else now, self._floor(slot))
        self._push(key, slot.due)
