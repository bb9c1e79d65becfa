"""Retry as a pure state machine: one table over every outcome a delivery can have, plus the schedule's walk.

HTTP rows go through ``sender.classify_response`` and failure rows through ``sender.classify_exception`` (the
functions the real sender uses), so the table pins the whole path from what the receiver did to the next state.
The schedule used here escalates and no two steps are equal, so a delay taken from the wrong step cannot pass.
"""

from __future__ import annotations

import errno
import ssl
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from webhook_operator.delivery.retry import (
    PAUSED_FAILED,
    PAUSED_LIMIT,
    Attempted,
    Resumed,
    RetryPolicy,
    Skipped,
    next_state,
    waiting_for,
)
from webhook_operator.delivery.sender import Outcome, OutcomeKind, classify_exception, classify_response
from webhook_operator.delivery.ssrf import AddressRefused
from webhook_operator.store.base import RetryState

POLICY = RetryPolicy((10.0, 20.0, 40.0))
NOW = 1_000_000.0
QIDS = (7, 8)


def http(status: int, retry_after: str | None = None, reason: str | None = None) -> Outcome:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    if 300 <= status < 400:
        headers["Location"] = "https://elsewhere.example/"
    return classify_response(status, reason, headers, "", 3.0, now=NOW, retry_after_bounds=(1.0, 3600.0))


def failure(exc: BaseException) -> Outcome:
    kind, error = classify_exception(exc, 5.0)
    return Outcome(kind, None, 5.0, error)


def _key() -> Any:
    return SimpleNamespace(host="receiver.test", port=443, ssl=True)


def refused() -> aiohttp.ClientConnectorError:
    return aiohttp.ClientConnectorError(_key(), OSError(errno.ECONNREFUSED, "Connection refused"))


def tls_error() -> aiohttp.ClientConnectorCertificateError:
    return aiohttp.ClientConnectorCertificateError(_key(), ssl.SSLCertVerificationError("certificate verify failed"))


CONFIG = Outcome(OutcomeKind.PERMANENT, None, 0.0, "configuration error: Secret ns/s not found")
RENDER = Outcome(OutcomeKind.PERMANENT, None, 0.0, "payload could not be rendered: undefined variable")

# (case, outcome, paused, delay from NOW (None: no next attempt), status code, reason contains)
TABLE: list[tuple[str, Outcome, str | None, float | None, int | None, str]] = [
    ("3xx is a retryable failure", http(302), None, 10.0, 302, "redirect"),
    ("4xx is retryable", http(404, reason="Not Found"), None, 10.0, 404, "HTTP 404 Not Found"),
    ("400 is retryable", http(400), None, 10.0, 400, "HTTP 400"),
    ("408 without Retry-After", http(408), None, 10.0, 408, "HTTP 408"),
    ("408 ignores Retry-After (only 429/503 carry it)", http(408, "300"), None, 10.0, 408, "HTTP 408"),
    ("429 without Retry-After", http(429), None, 10.0, 429, "HTTP 429"),
    ("429 Retry-After above the step wins", http(429, "300"), None, 300.0, 429, "HTTP 429"),
    ("429 Retry-After below the step never shortens it", http(429, "2"), None, 10.0, 429, "HTTP 429"),
    ("503 Retry-After as an HTTP date 20 s ahead", http(503, "Mon, 12 Jan 1970 13:47:00 GMT"), None, 20.0, 503,
     "HTTP 503"),
    ("5xx is retryable", http(500), None, 10.0, 500, "HTTP 500"),
    ("410 Gone is retryable like any status", http(410), None, 10.0, 410, "HTTP 410"),
    ("timeout", failure(TimeoutError()), None, 10.0, None, "timeout after 5 s"),
    ("connection refused", failure(refused()), None, 10.0, None, "connection refused"),
    ("TLS error", failure(tls_error()), None, 10.0, None, "TLS certificate verification failed"),
    ("SSRF refusal pauses as failed", failure(AddressRefused("receiver.test", 443, "10.0.0.1 is private")),
     PAUSED_FAILED, None, None, "10.0.0.1"),
    ("configuration error pauses as failed", CONFIG, PAUSED_FAILED, None, None, "Secret ns/s not found"),
    ("render error pauses as failed", RENDER, PAUSED_FAILED, None, None, "could not be rendered"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "outcome", "paused", "delay", "code", "reason"), TABLE, ids=[r[0] for r in TABLE])
def test_first_failure(case: str, outcome: Outcome, paused: str | None, delay: float | None, code: int | None,
                       reason: str) -> None:  # fmt: skip
    state = next_state(RetryState(), Attempted(QIDS, outcome), POLICY, NOW)
    assert state.held_qids == QIDS and state.attempts == 1 and state.paused == paused
    assert state.next_attempt_at == (None if delay is None else NOW + delay)
    assert state.last_failed_at == NOW and state.last_status_code == code
    assert state.last_reason is not None and reason in state.last_reason


def test_2xx_delivers_clears_the_held_batch_and_starts_the_schedule_over() -> None:
    held = RetryState(held_qids=QIDS, attempts=2, next_attempt_at=NOW, last_failed_at=NOW - 5, last_status_code=500,
                      last_reason="HTTP 500")  # fmt: skip
    state = next_state(held, Attempted(QIDS, http(204)), POLICY, NOW + 1)
    assert state == RetryState(held_qids=(), attempts=0, next_attempt_at=None, paused=None, last_failed_at=NOW - 5,
                               last_status_code=500, last_reason="HTTP 500")  # fmt: skip


def test_the_schedule_escalates_then_pauses_at_retry_limit_reached() -> None:
    state, now, delays = RetryState(), NOW, []
    for _ in range(POLICY.max_attempts - 1):
        state = next_state(state, Attempted(QIDS, http(500)), POLICY, now)
        assert state.paused is None and state.next_attempt_at is not None
        delays.append(state.next_attempt_at - now)
        now = state.next_attempt_at
    assert delays == [10.0, 20.0, 40.0]
    state = next_state(state, Attempted(QIDS, http(500)), POLICY, now)
    assert (state.paused, state.next_attempt_at, state.attempts) == (PAUSED_LIMIT, None, 4)


def test_a_success_resets_the_count_so_a_later_failure_starts_at_the_first_step() -> None:
    state = RetryState()
    for _ in range(3):
        state = next_state(state, Attempted(QIDS, http(500)), POLICY, NOW)
    state = next_state(state, Attempted(QIDS, http(200)), POLICY, NOW)
    state = next_state(state, Attempted((9,), http(500)), POLICY, NOW)
    assert (state.attempts, state.paused, state.next_attempt_at, state.held_qids) == (1, None, NOW + 10.0, (9,))


def test_retry_after_lower_bounds_every_step() -> None:
    state = next_state(RetryState(), Attempted(QIDS, http(503)), POLICY, NOW)
    state = next_state(state, Attempted(QIDS, http(429, "15")), POLICY, NOW)
    assert state.next_attempt_at == NOW + 20.0  # step 2 is 20 s: Retry-After 15 does not shorten it
    state = next_state(state, Attempted(QIDS, http(429, "100")), POLICY, NOW)
    assert state.next_attempt_at == NOW + 100.0  # step 3 is 40 s: Retry-After 100 lengthens it


def test_no_schedule_means_the_first_failure_reaches_the_limit() -> None:
    state = next_state(RetryState(), Attempted(QIDS, http(500)), RetryPolicy(()), NOW)
    assert state.paused == PAUSED_LIMIT and state.next_attempt_at is None


@pytest.mark.parametrize("paused", [PAUSED_LIMIT, PAUSED_FAILED, None])
def test_resume_keeps_the_held_batch_and_sends_it_now(paused: str | None) -> None:
    held = RetryState(held_qids=QIDS, attempts=7, next_attempt_at=None if paused else NOW + 60, paused=paused,
                      last_failed_at=NOW, last_status_code=500, last_reason="HTTP 500")  # fmt: skip
    state = next_state(held, Resumed(), POLICY, NOW)
    assert (state.held_qids, state.attempts, state.paused, state.next_attempt_at) == (QIDS, 0, None, None)
    assert (state.last_status_code, state.last_reason) == (500, "HTTP 500")
    assert waiting_for(state, NOW) is None
    state = next_state(state, Attempted(QIDS, http(500)), POLICY, NOW)
    assert state.next_attempt_at == NOW + 10.0, "after a resume the schedule starts over"


def test_skip_drops_the_held_batch_and_carries_on() -> None:
    held = RetryState(held_qids=QIDS, attempts=7, paused=PAUSED_LIMIT, last_reason="HTTP 500")
    state = next_state(held, Skipped(), POLICY, NOW)
    assert (state.held_qids, state.attempts, state.paused, state.next_attempt_at) == ((), 0, None, None)


def test_a_failure_of_a_new_batch_holds_that_batch() -> None:
    state = next_state(RetryState(held_qids=(1,), attempts=1), Attempted((1, 2), http(500)), POLICY, NOW)
    assert state.held_qids == (1, 2) and state.attempts == 2


def test_waiting_for() -> None:
    assert waiting_for(RetryState(), NOW) is None
    assert waiting_for(RetryState(next_attempt_at=NOW + 3), NOW) == 3
    assert waiting_for(RetryState(next_attempt_at=NOW - 3), NOW) is None


def test_transitions_are_pure() -> None:
    before = RetryState(held_qids=QIDS, attempts=1, next_attempt_at=NOW)
    next_state(before, Attempted(QIDS, http(500)), POLICY, NOW)
    next_state(before, Resumed(), POLICY, NOW)
    assert before == RetryState(held_qids=QIDS, attempts=1, next_attempt_at=NOW)


@pytest.mark.parametrize(("text", "schedule"), [("1m,5m,15m,1h,4h,12h", (60, 300, 900, 3600, 14400, 43200)),
                                                ("200ms, 2s", (0.2, 2.0)), ("", ())])  # fmt: skip
def test_policy_parse(text: str, schedule: tuple[float, ...]) -> None:
    assert RetryPolicy.parse(text).schedule == schedule


def test_policy_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        RetryPolicy.parse("5 minutes")
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy((-1.0,))
