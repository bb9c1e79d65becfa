"""Which transitions make Events (pure), and the recorder's per-(webhook, reason) window and global cap."""

from __future__ import annotations

import pytest

from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.api.webhook_status import WebhookState as S
from webhook_operator.status.events import ObjectRef, transition_events

from .fakes import FakeClock, Recorder, unused_client

REASONS = {
    S.ACTIVE: Reason.DELIVERING,
    S.DISABLED: Reason.DISABLED,
    S.AWAITING_RETRY: Reason.DELIVERY_FAILING,
    S.RETRY_LIMIT_REACHED: Reason.RETRY_LIMIT_REACHED,
    S.FAILED: Reason.DELIVERY_FAILING,
}


def snap(state: S, reason: str | None = None, message: str = "msg") -> WebhookSnapshot:
    return WebhookSnapshot("ns/h", state, reason or REASONS[state], message, 0, 0, 0)


def reasons(previous: WebhookSnapshot | None, current: WebhookSnapshot) -> list[tuple[str, str]]:
    return [(t, r) for t, r, _ in transition_events(previous, current)]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (S.ACTIVE, S.AWAITING_RETRY, [("Warning", "DeliveryFailing")]),
        (S.ACTIVE, S.FAILED, [("Warning", "DeliveryFailing")]),
        (S.AWAITING_RETRY, S.FAILED, []),  # still failing
        (S.AWAITING_RETRY, S.AWAITING_RETRY, []),
        (S.AWAITING_RETRY, S.RETRY_LIMIT_REACHED, [("Warning", "RetryLimitReached")]),
        (S.ACTIVE, S.RETRY_LIMIT_REACHED, [("Warning", "RetryLimitReached")]),
        (S.AWAITING_RETRY, S.ACTIVE, [("Normal", "DeliveryRecovered")]),
        (S.RETRY_LIMIT_REACHED, S.ACTIVE, [("Normal", "DeliveryRecovered")]),
        (S.ACTIVE, S.DISABLED, [("Normal", "Disabled")]),
        (S.DISABLED, S.ACTIVE, []),
        (S.ACTIVE, S.ACTIVE, []),
    ],
)
def test_transitions(before: S, after: S, expected: list[tuple[str, str]]) -> None:
    assert reasons(snap(before), snap(after)) == expected


def test_configuration_error_has_its_own_reason() -> None:
    bad = snap(S.FAILED, Reason.CONFIGURATION_ERROR, "endpoint resolves to a private address")
    assert transition_events(snap(S.ACTIVE), bad) == [
        ("Warning", "ConfigurationError", "endpoint resolves to a private address")
    ]
    assert transition_events(bad, bad) == []
    assert reasons(bad, snap(S.ACTIVE)) == [("Normal", "DeliveryRecovered")]


def test_first_sight_reports_only_trouble() -> None:
    assert reasons(None, snap(S.AWAITING_RETRY)) == [("Warning", "DeliveryFailing")]
    assert reasons(None, snap(S.RETRY_LIMIT_REACHED)) == [("Warning", "RetryLimitReached")]
    assert reasons(None, snap(S.ACTIVE)) == []
    assert reasons(None, snap(S.DISABLED)) == []


def test_messages_are_truncated() -> None:
    [(_, _, message)] = transition_events(snap(S.ACTIVE), snap(S.AWAITING_RETRY, message="x" * 5000))
    assert len(message) == 1024


def test_object_ref_from_key() -> None:
    assert ObjectRef.from_key("team-a/hook", "u1") == ObjectRef("team-a", "hook", "u1")


async def test_one_call_per_window_and_count_stays_truthful() -> None:
    clock = FakeClock()
    recorder = Recorder(unused_client, window=60, clock=clock)
    ref = ObjectRef("ns", "h")
    try:
        assert await recorder.record(ref, "Warning", "DeliveryFailing", "a")
        clock.now = 10
        assert not await recorder.record(ref, "Warning", "DeliveryFailing", "b")  # tallied
        assert await recorder.record(ref, "Normal", "DeliveryRecovered", "c")  # another reason: own window
        clock.now = 70
        assert await recorder.record(ref, "Warning", "DeliveryFailing", "d")  # patches the same Event
        assert recorder.sent == [
            ("DeliveryFailing", None, 1),
            ("DeliveryRecovered", None, 1),
            ("DeliveryFailing", "h.1", 3),
        ]
        assert recorder.suppressed_total == 1
    finally:
        recorder.close()


async def test_a_failed_call_gives_the_window_back() -> None:
    clock = FakeClock()
    recorder = Recorder(unused_client, window=60, clock=clock)
    ref = ObjectRef("ns", "h")
    try:
        recorder.fail = True
        assert not await recorder.record(ref, "Warning", "DeliveryFailing", "a")
        recorder.fail = False
        clock.now = 1
        assert await recorder.record(ref, "Warning", "DeliveryFailing", "b")
        assert recorder.sent == [("DeliveryFailing", None, 2)]
        assert recorder.failed_total == 1
    finally:
        recorder.close()


async def test_global_cap_drops_excess() -> None:
    clock = FakeClock()
    recorder = Recorder(unused_client, max_per_second=2, clock=clock)
    try:
        results = [await recorder.record(ObjectRef("ns", f"h{i}"), "Warning", "DeliveryFailing", "x") for i in range(5)]
        assert results == [True, True, False, False, False]
        assert recorder.dropped_total == 3
        recorder.forget(ObjectRef("ns", "h0"))
        clock.now = 100
        assert await recorder.record(ObjectRef("ns", "h0"), "Warning", "DeliveryFailing", "x")
        assert recorder.sent[-1] == ("DeliveryFailing", None, 1)  # forgotten: a new Event
    finally:
        recorder.close()
