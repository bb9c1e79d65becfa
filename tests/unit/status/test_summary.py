"""The status fold: every state, transition times, Stalled/Reconciling, nextAttempt, truncation, CRD validity."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.api.text import truncate
from webhook_operator.api.webhook_status import WebhookState, WebhookStatus
from webhook_operator.status.summary import MAX_MESSAGE, OperatorConditions, pruned, rfc3339, summarize

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
T1 = T0 + 60


def snap(state: WebhookState = WebhookState.ACTIVE, **kw: Any) -> WebhookSnapshot:
    defaults: dict[str, Any] = {
        "key": "ns/hook",
        "state": state,
        "reason": {
            WebhookState.ACTIVE: Reason.DELIVERING,
            WebhookState.DISABLED: Reason.DISABLED,
            WebhookState.FAILED: Reason.CONFIGURATION_ERROR,
            WebhookState.AWAITING_RETRY: Reason.DELIVERY_FAILING,
            WebhookState.RETRY_LIMIT_REACHED: Reason.RETRY_LIMIT_REACHED,
        }[state],
        "message": f"{state.value} message",
        "delivered": 5,
        "failed": 2,
        "pending": 3,
    }
    defaults.update(kw)
    return WebhookSnapshot(**defaults)


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_active_is_ready_with_counts_and_last_success() -> None:
    status = summarize(snap(last_successful_at=T0 + 0.7), generation=3, now=T1)
    assert status == {
        "observedGeneration": 3,
        "status": "active",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Delivering",
                "message": "active message",
                "lastTransitionTime": rfc3339(T1),
                "observedGeneration": 3,
            }
        ],
        "failureDetails": None,
        "lastSuccessfulAt": "2027-01-15T08:00:00Z",
        "counts": {"delivered": 5, "failed": 2, "pending": 3},
        "fallbackActive": None,  # no spec.fallback: the field is removed (merge-patch null)
        "fallbackReason": None,
    }
    WebhookStatus.model_validate(status)


@pytest.mark.parametrize(
    ("state", "ready", "reason", "stalled"),
    [
        (WebhookState.ACTIVE, "True", "Delivering", False),
        (WebhookState.DISABLED, "False", "Disabled", False),
        (WebhookState.AWAITING_RETRY, "False", "DeliveryFailing", False),
        (WebhookState.FAILED, "False", "ConfigurationError", True),
        (WebhookState.RETRY_LIMIT_REACHED, "False", "RetryLimitReached", True),
    ],
)
def test_each_state(state: WebhookState, ready: str, reason: str, stalled: bool) -> None:
    status = summarize(snap(state), generation=1, now=T0)
    by_type = conditions(status)
    assert status["status"] == state.value
    assert by_type["Ready"]["status"] == ready and by_type["Ready"]["reason"] == reason
    assert ("Stalled" in by_type) is stalled
    if stalled:
        assert by_type["Stalled"] | {"lastTransitionTime": None} == {
            "type": "Stalled",
            "status": "True",
            "reason": reason,
            "message": f"{state.value} message",
            "lastTransitionTime": None,
            "observedGeneration": 1,
        }
    assert "Reconciling" not in by_type
    WebhookStatus.model_validate(status)


def test_unknown_before_the_engine_reports() -> None:
    status = summarize(None, generation=2, now=T0)
    by_type = conditions(status)
    assert by_type["Ready"]["status"] == "Unknown"
    assert by_type["Reconciling"]["status"] == "True"
    assert status["status"] is None and status["counts"] is None
    WebhookStatus.model_validate(status)


def test_configuration_error_overrides_the_engine() -> None:
    extra = OperatorConditions(configuration_error="Secret hmac not found")
    status = summarize(snap(WebhookState.ACTIVE), generation=4, now=T0, operator=extra)
    by_type = conditions(status)
    assert status["status"] == "failed"
    assert by_type["Ready"]["status"] == "False" and by_type["Ready"]["reason"] == "ConfigurationError"
    assert by_type["Ready"]["message"] == "Secret hmac not found"
    assert by_type["Stalled"]["status"] == "True"
    assert status["counts"] == {"delivered": 5, "failed": 2, "pending": 3}
    # Even with no snapshot at all.
    alone = summarize(None, generation=4, now=T0, operator=extra)
    assert alone["status"] == "failed" and "Reconciling" not in conditions(alone)


def test_warnings_are_appended_without_changing_readiness() -> None:
    extra = OperatorConditions(warnings=("spec.webhookConfig.secretKey is inline; use secretKeyRef",))
    ready = conditions(summarize(snap(), generation=1, now=T0, operator=extra))["Ready"]
    assert ready["status"] == "True"
    assert ready["message"] == "active message; Warning: spec.webhookConfig.secretKey is inline; use secretKeyRef"


def test_last_transition_time_is_kept_while_the_status_does_not_change() -> None:
    first = summarize(snap(WebhookState.AWAITING_RETRY), generation=1, now=T0)
    # Same Ready status, different reason/message/counters: time preserved.
    second = summarize(
        snap(WebhookState.RETRY_LIMIT_REACHED, message="other", failed=9), generation=1, now=T1, previous=first
    )
    assert conditions(second)["Ready"]["lastTransitionTime"] == rfc3339(T0)
    assert conditions(second)["Stalled"]["lastTransitionTime"] == rfc3339(T1)  # Stalled is new
    # Ready flips: new time.
    third = summarize(snap(WebhookState.ACTIVE), generation=1, now=T1 + 5, previous=second)
    assert conditions(third)["Ready"]["lastTransitionTime"] == rfc3339(T1 + 5)
    assert "Stalled" not in conditions(third)


def test_previous_status_read_from_the_resource_is_understood() -> None:
    stored = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    status = summarize(snap(), generation=1, now=T0, previous=stored)
    assert conditions(status)["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"


def test_next_attempt_only_while_awaiting_retry() -> None:
    failure = {
        "last_failed_at": T0,
        "last_failed_status_code": 503,
        "last_failed_reason": "HTTP 503",
        "next_attempt_at": T0 + 30.2,
    }
    waiting = summarize(snap(WebhookState.AWAITING_RETRY, **failure), generation=1, now=T0)
    assert waiting["failureDetails"] == {
        "lastFailedAt": rfc3339(T0),
        "lastFailedStatusCode": 503,
        "lastFailedReason": "HTTP 503",
        "nextAttempt": rfc3339(T0 + 31),  # rounded up: never shown earlier than it really is
        "deadLetters": None,
        "deadLetteredSince": None,
        "lastDeadLetterReason": None,
    }
    for state in (WebhookState.ACTIVE, WebhookState.RETRY_LIMIT_REACHED, WebhookState.FAILED):
        details = summarize(snap(state, **failure), generation=1, now=T0)["failureDetails"]
        assert details is not None and details["nextAttempt"] is None  # null: the merge patch deletes it
        assert details["lastFailedStatusCode"] == 503
    assert summarize(snap(), generation=1, now=T0)["failureDetails"] is None


def test_messages_and_failure_reasons_are_truncated() -> None:
    long = "x" * 5000
    status = summarize(
        snap(WebhookState.RETRY_LIMIT_REACHED, message=long, last_failed_reason=long, last_failed_at=T0),
        generation=1,
        now=T0,
        operator=OperatorConditions(warnings=("w" * 3000,)),
    )
    for condition in status["conditions"]:
        assert len(condition["message"]) == MAX_MESSAGE and condition["message"].endswith("…")
    assert len(status["failureDetails"]["lastFailedReason"]) == MAX_MESSAGE
    assert truncate("short", MAX_MESSAGE) == "short"


def test_unusable_reason_falls_back_to_the_states_reason() -> None:
    ready = conditions(summarize(snap(WebhookState.AWAITING_RETRY, reason="not a reason!"), generation=1, now=T0))
    assert ready["Ready"]["reason"] == "DeliveryFailing"
    empty = conditions(summarize(snap(WebhookState.DISABLED, reason="", message=""), generation=1, now=T0))
    assert empty["Ready"]["reason"] == "Disabled" and "disabled" in empty["Ready"]["message"]


def test_unknown_generation_is_left_out() -> None:
    status = summarize(snap(), generation=None, now=T0)
    assert status["observedGeneration"] is None
    assert "observedGeneration" not in status["conditions"][0]


def test_pruned_matches_what_the_api_server_stores() -> None:
    status = summarize(replace(snap(WebhookState.ACTIVE), last_failed_at=T0), generation=1, now=T0)
    stored = pruned(status)
    assert "lastSuccessfulAt" not in stored and "nextAttempt" not in stored["failureDetails"]
    assert pruned(stored) == stored


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(0.2, round_up=True) == "1970-01-01T00:00:01Z"
