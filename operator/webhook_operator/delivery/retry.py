"""Retry as a pure state machine: every change of a webhook's ``RetryState`` happens in ``next_state``.

The schedule is the seed's 1m, 5m, 15m, 1h, 4h, 12h, then retryLimitReached. It is data, so operators can change
it and tests can compress it to milliseconds. Retry-After from the receiver is honoured as a lower bound: we never
come back earlier than asked, and never earlier than the schedule says either.

Keeping the transitions pure (state in, state out, the clock passed in) is what lets one table-driven test cover
every outcome, and what lets the lane worker, the operations and a restarted process agree on what a state means.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from webhook_operator.api.webhook import WebhookState
from webhook_operator.delivery.sender import Outcome, OutcomeKind
from webhook_operator.store.base import KeyHold, RetryState

DEFAULT_SCHEDULE: tuple[float, ...] = (60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0)

PAUSED_LIMIT: Final = WebhookState.RETRY_LIMIT_REACHED.value
PAUSED_FAILED: Final = WebhookState.FAILED.value

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(text: str) -> float:
    """'90s', '5m', '1.5h', '200ms' or a bare number of seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a number with ms, s, m, h or d (e.g. 5m)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class RetryPolicy:
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE

    def __post_init__(self) -> None:
        if any(delay < 0 for delay in self.schedule):
            raise ValueError("retry delays must not be negative")

    @classmethod
    def parse(cls, text: str) -> RetryPolicy:
        """A comma-separated schedule such as '1m,5m,15m,1h,4h,12h'; an empty string means no retries."""
        parts = [p for p in text.split(",") if p.strip()]
        return cls(tuple(parse_duration(p) for p in parts))

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    def delay(self, failures: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait after the ``failures``-th failed attempt of a batch; None once retries are exhausted."""
        if failures < 1:
            raise ValueError("failures counts failed attempts and starts at 1")
        if failures > len(self.schedule):
            return None
        base = self.schedule[failures - 1]
        return base if retry_after is None else max(base, retry_after)


# -- what can happen to a lane --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempted:
    """A batch (``qids``) was tried; ``outcome`` says how it went."""

    qids: Sequence[int]
    outcome: Outcome


@dataclass(frozen=True)
class Resumed:
    """An operator asked to resume, or the configuration changed: the held batch goes first, now."""


@dataclass(frozen=True)
class Skipped:
    """The held batch went to the dead letters: the lane carries on with the next one."""


Transition = Attempted | Resumed | Skipped


def describe_failure(outcome: Outcome) -> str:
    """The one-line reason a failed attempt leaves in status (already masked by the attempt pipeline)."""
    return outcome.error or (f"HTTP {outcome.status_code}" if outcome.status_code else "failed")


def next_state(state: RetryState, event: Transition, policy: RetryPolicy, now: float) -> RetryState:
    """The lane's retry state after ``event``. Pure: the only place a ``RetryState`` is made from another.

    * delivered: nothing held, the attempt count starts over (a later failure begins the schedule again); the last
      failure stays for status (``failureDetails`` keeps history until the next failure replaces it);
    * failed: the batch is held and frozen; permanent (configuration) → ``failed``; retryable → the schedule's
      delay for this attempt number, lower-bounded by Retry-After; schedule exhausted → ``retryLimitReached``;
    * resumed: not paused, schedule starts over, the held batch stays held and goes now;
    * skipped: nothing held, not paused, schedule starts over.

    Leaving the paused state (resume, skip, a delivery) also ends an active fallback (``fallback`` None). A lane
    delivering in parallel (ordering entity/none) folds attempts with ``next_hold_state`` (below) instead; resume and
    skip mean the same for it: every hold goes now with its schedule restarted, or every hold is dropped.
    """
    if isinstance(event, Resumed):
        holds = tuple(dataclasses.replace(h, attempts=0, next_attempt_at=None) for h in state.holds)
        return dataclasses.replace(state, paused=None, attempts=0, next_attempt_at=None, fallback=None, holds=holds)
    if isinstance(event, Skipped):
        return dataclasses.replace(state, held_qids=(), paused=None, attempts=0, next_attempt_at=None, fallback=None,
                                   holds=())  # fmt: skip
    outcome = event.outcome
    if outcome.kind is OutcomeKind.SUCCESS:
        if not state.held_qids and not state.attempts and state.next_attempt_at is None and state.paused is None:
            return state  # the steady state: frozen, so sharing it is safe (and skips a copy per delivery)
        return dataclasses.replace(state, held_qids=(), attempts=0, next_attempt_at=None, paused=None, fallback=None)
    attempts = state.attempts + 1
    failed = dataclasses.replace(
        state, held_qids=tuple(event.qids), attempts=attempts, last_failed_at=now,
        last_status_code=outcome.status_code, last_reason=describe_failure(outcome),
    )  # fmt: skip
    if outcome.kind is OutcomeKind.PERMANENT:
        return dataclasses.replace(failed, paused=PAUSED_FAILED, next_attempt_at=None)
    delay = policy.delay(attempts, outcome.retry_after)
    if delay is None:
        return dataclasses.replace(failed, paused=PAUSED_LIMIT, next_attempt_at=None)
    return dataclasses.replace(failed, paused=None, next_attempt_at=now + delay)


def waiting_for(state: RetryState, now: float) -> float | None:
    """Seconds until the held batch may be retried; None if it may go now."""
    at = state.next_attempt_at
    return None if at is None or at <= now else at - now


# -- a lane that delivers in parallel (ordering entity or none): one hold per key ----------------------------------
#
# The seed's lane holds one batch and everything waits behind it. A parallel lane holds one batch *per key* (an
# entity with ordering entity, the batch itself with ordering none), each with its own attempt count and next
# attempt time, while other keys flow. What the webhook shows stays one ``RetryState``: ``held_qids`` is the union
# of every hold's qids (so the queue limits protect them, ``awaitingRetry`` means "something is held", the fallback
# hand-over sends them first), ``attempts`` the most any hold has made, ``next_attempt_at`` the earliest, ``last_*``
# the latest failure of any key. Reaching the end of the schedule with one key pauses the webhook
# (``retryLimitReached``), as a permanent failure does (``failed``): that is the state a person is alerted by, the
# fallback takes over in and the triggers report, and it must keep meaning "nothing is sent until someone acts".
# ``next_state`` above handles resume and skip for both kinds of lane.


def with_holds(state: RetryState, holds: tuple[KeyHold, ...], **changes: object) -> RetryState:
    """``state`` with ``holds`` and the webhook-wide fields that summarise them."""
    held = tuple(sorted(q for h in holds for q in h.qids))
    attempts = max((h.attempts for h in holds), default=0)
    due = min((h.next_attempt_at for h in holds if h.next_attempt_at is not None), default=None)
    return dataclasses.replace(state, holds=holds, held_qids=held, attempts=attempts, next_attempt_at=due,
                               **changes)  # type: ignore[arg-type]  # fmt: skip


def hold_of(state: RetryState, key: str) -> KeyHold | None:
    for hold in state.holds:
        if hold.key == key:
            return hold
    return None


def next_hold_state(state: RetryState, key: str, qids: Sequence[int], outcome: Outcome, policy: RetryPolicy,
                    now: float) -> RetryState:  # fmt: skip
    """The lane's retry state after the batch ``qids`` of ``key`` was tried.

    * delivered: ``key``'s hold (if any) is gone; when no hold is left the webhook is no longer paused and an active
      fallback ends (as in ``next_state``). A key that was not held changes nothing (the hot path: no copy).
    * failed: ``key`` holds ``qids`` (frozen: a retry resends exactly them) with its own attempt count, and waits the
      schedule's delay for that count (Retry-After a lower bound); a permanent failure pauses the webhook
      (``failed``), the end of the schedule pauses it too (``retryLimitReached``).
    """
    current = hold_of(state, key)
    others = tuple(h for h in state.holds if h.key != key)
    if outcome.kind is OutcomeKind.SUCCESS:
        if current is None:
            return state
        if others:
            return with_holds(state, others)
        return with_holds(state, (), paused=None, fallback=None)
    attempts = (current.attempts if current is not None else 0) + 1
    reason = describe_failure(outcome)
    paused = state.paused
    due: float | None = None
    if outcome.kind is OutcomeKind.PERMANENT:
        paused = PAUSED_FAILED
    else:
        delay = policy.delay(attempts, outcome.retry_after)
        if delay is None:
            paused = PAUSED_LIMIT if paused is None else paused
        else:
            due = now + delay
    hold = KeyHold(key, tuple(qids), attempts, due, now, outcome.status_code, reason)
    return with_holds(state, (*others, hold), paused=paused, last_failed_at=now,
                      last_status_code=outcome.status_code, last_reason=reason)  # fmt: skip


def drop_hold(state: RetryState, key: str) -> RetryState:
    """``key`` holds nothing any more (its batch was skipped, or lost an event that cannot be decoded: the rest is
    batched afresh and its schedule starts over). The last hold gone unpauses, as a skip does."""
    others = tuple(h for h in state.holds if h.key != key)
    if len(others) == len(state.holds):
        return state
    return with_holds(state, others) if others else with_holds(state, (), paused=None, fallback=None)


def shrink_hold(state: RetryState, key: str, qids: Sequence[int]) -> RetryState:
    """``key``'s frozen batch is now ``qids`` (batchSize lowered, or some of it left the store underneath)."""
    holds = tuple(dataclasses.replace(h, qids=tuple(qids)) if h.key == key else h for h in state.holds)
    return with_holds(state, holds)


def is_clear(state: RetryState) -> bool:
    """Nothing held, not paused, no fallback: what a cleared (NULL) stored retry state reads back as, for delivery."""
    return not state.held_qids and state.paused is None and state.fallback is None
