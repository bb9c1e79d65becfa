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
from webhook_operator.store.base import RetryState

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

    Leaving the paused state (resume, skip, a delivery) also ends an active fallback (``fallback`` None).
    """
    if isinstance(event, Resumed):
        return dataclasses.replace(state, paused=None, attempts=0, next_attempt_at=None, fallback=None)
    if isinstance(event, Skipped):
        return dataclasses.replace(state, held_qids=(), paused=None, attempts=0, next_attempt_at=None, fallback=None)
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
