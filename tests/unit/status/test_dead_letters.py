"""Status and Events for events a webhook's queue limits moved to the dead letters (issue 13, finding 4): the owner
must learn how many and since when from ``status.failureDetails``, and get a Warning Event, instead of finding out
from a silent gap in what arrived."""

from __future__ import annotations

from typing import Any

from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.api.webhook_status import WebhookState, WebhookStatus
from webhook_operator.status.events import QUEUE_LIMIT_EXCEEDED, queue_limit_event
from webhook_operator.status.summary import rfc3339, summarize

T0 = 1_800_000_000.0


def snap(**kw: Any) -> WebhookSnapshot:
    base: dict[str, Any] = dict(
        key="ns/hook", state=WebhookState.AWAITING_RETRY, reason=Reason.DELIVERY_FAILING,
        message="attempt 3 failed: HTTP 500", delivered=0, failed=3, pending=5,
        last_failed_at=T0, last_failed_status_code=500, last_failed_reason="HTTP 500",
    )  # fmt: skip
    base.update(kw)
    return WebhookSnapshot(**base)


def test_failure_details_say_how_many_dead_letters_since_when_and_why() -> None:
    status = summarize(
        snap(dead_letters=15, dead_lettered_since=T0 - 60.5, overflowed=15,
             dead_letter_reason="queue limit: 15 events over maxQueued 5 moved to the dead letters"),
        generation=1, now=T0,
    )  # fmt: skip
    details = status["failureDetails"]
    assert details["deadLetters"] == 15 and details["deadLetteredSince"] == rfc3339(T0 - 60.5)
    assert "maxQueued 5" in details["lastDeadLetterReason"]
    WebhookStatus.model_validate(status)  # the CRD's schema has the fields


def test_dead_letters_alone_make_failure_details_and_none_clear_them() -> None:
    quiet = snap(state=WebhookState.ACTIVE, reason=Reason.IDLE, last_failed_at=None, last_failed_status_code=None,
                 last_failed_reason=None)  # fmt: skip
    assert summarize(quiet, generation=1, now=T0)["failureDetails"] is None
    held = summarize(snap(state=WebhookState.ACTIVE, reason=Reason.IDLE, last_failed_at=None,
                          last_failed_status_code=None, last_failed_reason=None, dead_letters=2,
                          dead_lettered_since=T0), generation=1, now=T0)["failureDetails"]  # fmt: skip
    assert held is not None and held["deadLetters"] == 2
    cleared = summarize(snap(), generation=1, now=T0)["failureDetails"]
    # null in a merge patch deletes the field: retention pruned the dead letters, status stops mentioning them
    assert cleared["deadLetters"] is None and cleared["deadLetteredSince"] is None


def test_a_warning_event_when_the_limits_move_events_and_only_then() -> None:
    before = snap(dead_letters=0)
    after = snap(dead_letters=15, dead_lettered_since=T0, overflowed=15,
                 dead_letter_reason="queue limit: 15 events over maxQueued 5 moved to the dead letters")  # fmt: skip
    event = queue_limit_event(before, after)
    assert event is not None
    type_, reason, message = event
    assert (type_, reason) == ("Warning", QUEUE_LIMIT_EXCEEDED) == ("Warning", "QueueLimitExceeded")
    assert "maxQueued 5" in message and "15" in message
    assert queue_limit_event(after, after) is None, "counter updates are not news"
    assert queue_limit_event(None, snap(overflowed=0, dead_letters=4)) is None, "a skip or a restart is not"
    assert queue_limit_event(after, snap(overflowed=16, dead_letters=16, dead_letter_reason="x")) is not None
