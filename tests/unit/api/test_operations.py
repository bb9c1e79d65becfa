"""Operation requests as text: times, the redeliver annotation, and the lastTest status object."""

from __future__ import annotations

import pytest

from webhook_operator.api.operations import (
    MAX_REDELIVERY,
    MAX_TIME,
    RedeliverRequest,
    TestResult,
    format_time,
    parse_redeliver,
    parse_time,
)
from webhook_operator.api.webhook_status import WebhookStatus

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-15T08:00:00Z", NOW),
        ("2027-01-15T09:00:00+01:00", NOW),
        ("2027-01-15T08:00:00.250Z", NOW + 0.25),
        ("2027-01-15t08:00:00z", NOW),
        ("90s", NOW - 90),
        ("15m", NOW - 900),
        ("2h", NOW - 7200),
        ("1d", NOW - 86400),
        ("1.5h", NOW - 5400),
    ],
)
def test_times_are_rfc3339_or_ages(text: str, expected: float) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2027-01-15", "2027-01-15T08:00:00", "", "5 minutes", "-1h", "12"])
def test_bad_times_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|zone"):
        parse_time(text, NOW)


def test_format_time_round_trips() -> None:
    assert format_time(NOW + 0.123) == "2027-01-15T08:00:00.123Z"
    assert parse_time(format_time(NOW + 0.5), 0) == NOW + 0.5


def test_redeliver_by_ids_keeps_them_and_drops_repeats() -> None:
    request = parse_redeliver("ids=a,b, c;a", NOW)
    assert request == RedeliverRequest(("a", "b", "c"))
    assert parse_redeliver("ids=a,b,to=other,request=2", NOW) == RedeliverRequest(("a", "b"), to="other")


def test_redeliver_by_time_range() -> None:
    request = parse_redeliver("since=2027-01-15T07:00:00Z, until=30m, to=archive", NOW)
    assert (request.since, request.until, request.to) == (NOW - 3600, NOW - 1800, "archive")
    assert parse_redeliver("since=1h", NOW).until is None
    assert "to archive" in request.describe() and "2027-01-15T07:00:00.000Z" in request.describe()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "give event ids"),
        ("to=other", "give event ids"),
        ("until=1h", "give event ids"),
        ("ids=a,since=1h", "not both"),
        ("since=1h,until=2h", "later than since"),
        ("since=yesterday", "invalid time"),
        ("since=1h,since=2h", "given twice"),
        ("colour=red", "unknown key"),
        ("a,b", "expected key=value"),
        ("ids=a,to=Not_A_Name", "not a Webhook name"),
    ],
)
def test_bad_redeliver_values_say_why(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_redeliver(value, NOW)


def test_too_many_ids_are_refused() -> None:
    with pytest.raises(ValueError, match=str(MAX_REDELIVERY)):
        RedeliverRequest(tuple(str(i) for i in range(MAX_REDELIVERY + 1)))


def test_last_test_status_validates_against_the_crd_model() -> None:
    result = TestResult(time=NOW, ok=False, status_code=503, latency_ms=12.6, error="HTTP 503 Service Unavailable",
                        event_id="e-1", requested_by="alice", trigger="2")  # fmt: skip
    status = result.to_status()
    assert status == {"time": "2027-01-15T08:00:00.000Z", "success": False, "statusCode": 503, "latencyMs": 13,
                      "error": "HTTP 503 Service Unavailable", "eventId": "e-1", "requestedBy": "alice",
                      "trigger": "2"}  # fmt: skip
    parsed = WebhookStatus.model_validate({"lastTest": status, "handledAnnotations": {"test": "2"}})
    assert parsed.last_test is not None and parsed.last_test.status_code == 503
    assert "failed (HTTP 503 in 13 ms): HTTP 503" in result.describe() and "alice" in result.describe()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("999999999d", 0.0),
        ("9" * 400 + "s", 0.0),
        ("0001-01-01T00:00:00+05:00", 0.0),
        ("9999-12-31T23:59:59Z", MAX_TIME),
    ],
)
def test_absurd_times_are_clamped_not_an_error_later(text: str, expected: float) -> None:
    """Found by fuzzing (issue 13, item 11): an annotation ``since=999999999d`` made formatting the time raise."""
    value = parse_time(text, 1_767_225_600.0)
    assert value == expected
    assert format_time(value) in {"1970-01-01T00:00:00.000Z", "9999-12-31T23:59:59.000Z"}
