"""The intake and the operations API do exactly what the OpenAPI document says (issue 13, item 11).

Each case is something schemathesis found against the running operator (``tests/e2e/test_fuzz.py``), pinned here as
a fast test: a schema-violating request that was accepted, a schema-valid one that was refused, a 500, a traceback
in the log. The document side (patterns, documented statuses) is in ``test_openapi.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from webhook_operator.api.events import ChangeEvent
from webhook_operator.intake.errors import IntakeError
from webhook_operator.intake.operations import parse_api_time, parse_query, parse_redeliver_body
from webhook_operator.intake.parsing import parse_events

from .helpers import AUTH, EVENTS, dumps, expect_error, intake, minimal_event, om_signature

NOW = 1_800_000_000.0
HEX = "sha256=" + "ab" * 32


# --- signature headers -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value"),
    [("X-OpenMetadata-Signature", "{}"), ("X-OpenMetadata-Signature", "sha256=zz"), ("X-OM-Signature", "Y"),
     ("X-OM-Signature", "sha256=Bguki5A"), ("X-OpenMetadata-Signature", "SHA256=" + "ab" * 32)],
)  # fmt: skip
async def test_a_malformed_signature_is_400_naming_the_header_even_without_a_secret(header: str, value: str) -> None:
    async with intake() as client:
        resp = await client.post(EVENTS, data=dumps(minimal_event()), headers={**AUTH, header: value})
        await expect_error(resp, 400, f"{header} is malformed")


async def test_a_well_formed_signature_without_a_secret_is_accepted_unchecked() -> None:
    body = dumps(minimal_event())
    headers = {**AUTH, "X-OpenMetadata-Signature": HEX, "X-OM-Signature": om_signature(b"other", body),
               "X-Other-Signature": "whatever"}  # fmt: skip
    async with intake() as client:
        assert (await client.post(EVENTS, data=body, headers=headers)).status == 202
        # An empty header is an absent one (as HTTP tooling, schemathesis included, reads it).
        assert (await client.post(EVENTS, data=body, headers={**AUTH, "X-OM-Signature": ""})).status == 202


async def test_with_a_secret_a_malformed_signature_stays_401() -> None:
    async with intake(hmac_secret=b"k") as client:
        resp = await client.post(EVENTS, data=dumps(minimal_event()), headers={**AUTH, "X-OM-Signature": "Y"})
        await expect_error(resp, 401, "X-OM-Signature is malformed")


# --- events: JSON types exactly ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("timestamp", [927.0, 1e3, 0.0])
def test_an_integral_timestamp_written_as_a_float_is_an_integer(timestamp: float) -> None:
    (event,) = parse_events(dumps(minimal_event(timestamp=timestamp))).events
    assert event.timestamp == int(timestamp) and isinstance(event.timestamp, int)
    assert ChangeEvent.model_validate_json(dumps(minimal_event(timestamp=timestamp))).timestamp == int(timestamp)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [({"timestamp": 1.5}, "timestamp"), ({"timestamp": 2**70}, "timestamp"), ({"timestamp": True}, "timestamp"),
     ({"previousVersion": "1.5"}, "previousVersion"), ({"currentVersion": True}, "currentVersion"),
     ({"changeDescription": {"previousVersion": "2"}}, "changeDescription.previousVersion"),
     ({"entity": '{"a": NaN}'}, "NaN is not a JSON value"), ({"entity": "{"}, "entity"),
     ({"entity": '{"a": "\\ud800"}'}, "unpaired UTF-16 surrogate")],
)  # fmt: skip
def test_values_of_the_wrong_json_type_are_refused_naming_the_field(extra: dict[str, Any], fragment: str) -> None:
    with pytest.raises(IntakeError) as info:
        parse_events(dumps(minimal_event(**extra)))
    assert info.value.status == 400 and fragment in info.value.message, info.value.message


def test_null_change_lists_are_empty_lists() -> None:
    change = {"fieldsAdded": None, "fieldsUpdated": None, "fieldsDeleted": [{"name": "owner"}]}
    (event,) = parse_events(dumps(minimal_event(changeDescription=change))).events
    assert event.changed_fields() == ["owner"]


# --- operations API: parameters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [{"status": ""}, {"since": ""}, {"until": "2026-03-04T18:00Z"}, {"since": "20260304T180000Z"},
     {"since": " 2h"}, {"since": "2026-02-30T00:00:00Z"}, {"since": "1990-12-31T22:59:60Z"}, {"since": "٣h"},
     {"cursor": "9" * 19}, {"cursor": ""}, {"limit": ""}],
)  # fmt: skip
def test_query_parameters_outside_the_documented_forms_are_400(params: dict[str, str]) -> None:
    with pytest.raises(IntakeError) as info:
        parse_query(params, NOW)
    assert info.value.status == 400 and next(iter(params)) in info.value.message, info.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2h", NOW - 7200), ("1.5m", NOW - 90), ("2027-01-15T08:00:00Z", 1_800_000_000.0),
     ("2027-01-15t09:00:00.5+01:00", 1_800_000_000.5), ("1990-12-31T23:59:60Z", 662_688_000.0),
     ("999999999d", 0.0), ("076922304.7h", 0.0), ("0001-01-01T00:00:00+23:59", 0.0),
     ("9999-12-31T23:59:59-23:59", 253_402_300_799.0)],
)  # fmt: skip
def test_times_in_the_documented_forms_are_accepted_and_kept_printable(text: str, expected: float) -> None:
    assert parse_api_time("since", text, NOW) == pytest.approx(expected)


# --- operations API: the redeliver body -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [({"eventIds": []}, "eventIds"), ({"eventIds": ["a", ""]}, "eventIds"), ({"eventIds": None}, "eventIds"),
     ({"eventIds": ["a"], "to": None}, "to must be"), ({"eventIds": ["a"], "to": ""}, "to must be"),
     ({"eventIds": ["a"], "to": "Other"}, "to must be"), ({"since": "y"}, "since"), ({"since": None}, "since"),
     ({"until": "2h"}, "until needs since"), ({"eventIds": ["a"], "until": "2h"}, "until needs since"),
     ({"eventIds": ["a"], "since": "2h"}, "not both"), ({}, "give event ids")],
)  # fmt: skip
def test_redeliver_bodies_outside_the_document_are_400(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(IntakeError) as info:
        parse_redeliver_body(body, NOW)
    assert info.value.status == 400 and fragment in info.value.message, info.value.message


def test_an_empty_range_is_nothing_to_redeliver_not_a_bad_request() -> None:
    with pytest.raises(IntakeError) as info:
        parse_redeliver_body({"since": "1h", "until": "2h"}, NOW)
    assert info.value.status == 409 and "empty" in info.value.message
    assert parse_redeliver_body({"since": "2h", "until": "1h", "to": "other"}, NOW).since == NOW - 7200


# --- malformed HTTP is the client's mistake, not an operator traceback -----------------------------------------------


async def test_a_request_aiohttp_cannot_parse_is_logged_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    async with intake() as client:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nX-Probe: \x00\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await writer.wait_closed()
    assert answer.split(b" ", 2)[1] == b"400", answer
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records and all(r.exc_info is None and r.levelno <= logging.INFO for r in records), records
    assert "malformed HTTP request refused with 400" in records[0].getMessage()
