"""Body → events: the three shapes, the bodies kept as received, and 400/413 messages that name the field."""

from __future__ import annotations

import json

import pytest

from support.events import EVENTS_DIR, event_files
from webhook_operator.intake.parsing import MAX_REPORTED_ERRORS, IntakeError, parse_events

from .helpers import dumps, minimal_event


def refused(body: bytes, *, max_events: int = 10_000) -> IntakeError:
    with pytest.raises(IntakeError) as info:
        parse_events(body, max_events=max_events)
    return info.value


def test_single_object() -> None:
    parsed = parse_events(dumps(minimal_event(1)))
    assert [e.id for e in parsed.events] == [minimal_event(1)["id"]]
    assert parsed.bodies == [dumps(minimal_event(1))]
    assert not parsed.ping


def test_array_keeps_order_and_duplicates() -> None:
    items = [minimal_event(1), minimal_event(2), minimal_event(1)]
    parsed = parse_events(json.dumps(items, indent=2).encode())
    assert [e.entity_id for e in parsed.events] == ["e-1", "e-2", "e-1"]
    assert parsed.bodies == [dumps(i) for i in items]


def test_openmetadata_list_shape_from_the_sample_file() -> None:
    path = EVENTS_DIR / "batch-openmetadata-list-shape.json"
    raw = json.loads(path.read_text())
    parsed = parse_events(path.read_bytes())
    assert len(parsed.events) == len(raw["data"]) == 10
    assert parsed.bodies == [dumps(item) for item in raw["data"]]


def test_every_sample_event_parses_and_bodies_are_compact_copies_of_what_was_sent() -> None:
    for path in event_files():
        parsed = parse_events(path.read_bytes())
        assert parsed.bodies == [dumps(json.loads(path.read_text()))], path.name
        assert b"\n" not in parsed.bodies[0]


def test_entity_as_json_string_stays_a_string_in_the_body() -> None:
    parsed = parse_events(dumps(minimal_event(1, entity=json.dumps({"id": "e-1", "name": "t"}))))
    assert parsed.events[0].entity == {"id": "e-1", "name": "t"}
    assert isinstance(json.loads(parsed.bodies[0])["entity"], str)


def test_unknown_event_type_and_unknown_fields_are_kept() -> None:
    parsed = parse_events(dumps(minimal_event(1, eventType="suggestionAccepted", recursive=True)))
    assert parsed.events[0].event_type == "suggestionAccepted"
    assert json.loads(parsed.bodies[0])["recursive"] is True


def test_non_ascii_is_kept_raw_and_a_bom_is_ignored() -> None:
    item = minimal_event(1, entityFullyQualifiedName="postgres_crm.crm.sales_jp.顧客マスタ 🎉")
    parsed = parse_events(b"\xef\xbb\xbf" + dumps(item))
    assert "顧客マスタ 🎉".encode() in parsed.bodies[0]


def test_destination_test_message_is_a_ping() -> None:
    parsed = parse_events(b'{"message": "This is a test message from OpenMetadata"}')
    assert parsed.ping and parsed.events == [] and parsed.bodies == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body is not valid JSON: Expecting value at line 1 column 1"),
        (b'{"id": ', "body is not valid JSON: Expecting value at line 1 column 8"),
        (b"\xff\xfe", "body is not valid UTF-8: invalid byte at offset 0"),
        (b"[NaN]", "body is not valid JSON: NaN is not a JSON value"),
        (b"[" * 100_000, "body: nested deeper than 64 levels"),
        (b"[]", "empty batch"),
        (b'{"data": [], "paging": {"total": 0}}', "empty batch"),
        (b'"hello"', "body must be a ChangeEvent object, a JSON array of ChangeEvents, or "),
        (b'{"data": {"id": "x"}}', "data: Input should be a JSON array of ChangeEvents, not an object"),
        (b"[1]", "[0]: Input should be a JSON object, not a number"),
    ],
)
def test_malformed_bodies(body: bytes, message: str) -> None:
    error = refused(body)
    assert error.status == 400
    assert error.message.startswith(message), error.message


def test_missing_field_in_the_list_shape_names_its_position() -> None:
    items = [minimal_event(i) for i in range(5)]
    del items[3]["timestamp"]
    error = refused(dumps({"data": items, "paging": {"total": 5}}))
    assert (error.status, error.message) == (400, "data[3].timestamp: Field required")


def test_wrong_type_in_an_array_names_its_position() -> None:
    error = refused(dumps([minimal_event(0, eventType=7)]))
    assert error.message == "[0].eventType: Input should be a valid string"


def test_single_object_errors_name_the_bare_field() -> None:
    error = refused(dumps(minimal_event(0, timestamp="yesterday")))
    assert error.message == "timestamp: Input should be a valid integer"


def test_nested_field_path() -> None:
    event = minimal_event(0, changeDescription={"fieldsAdded": [{"name": "tags"}, {"oldValue": 1}]})
    error = refused(dumps([minimal_event(1), event]))
    assert error.message == "[1].changeDescription.fieldsAdded[1].name: Field required"


def test_entity_string_that_is_not_json_is_refused_naming_the_entity() -> None:
    error = refused(dumps([minimal_event(1, entity="{not json")]))
    assert error.status == 400
    assert error.message.startswith("[0].entity: Value error, entity is a string but not valid JSON")


def test_one_bad_event_refuses_the_whole_post_and_errors_are_bounded() -> None:
    items = [minimal_event(i) for i in range(50)]
    for item in items[10:]:
        del item["entityId"]
    error = refused(dumps(items))
    parts = error.message.split("; ")
    assert len(parts) == MAX_REPORTED_ERRORS
    assert parts[0] == "[10].entityId: Field required"


def test_unpaired_surrogate_in_an_extra_field_is_refused() -> None:
    body = dumps([minimal_event(1)])[:-2] + b',"note":"\\ud800"}]'
    error = refused(body)
    assert error.message == "[0]: a string holds an unpaired UTF-16 surrogate escape"


def test_too_many_events_is_413() -> None:
    error = refused(dumps([minimal_event(i) for i in range(4)]), max_events=3)
    assert error.status == 413
    assert error.message == "too many events in one post: 4 (at most 3)"
    assert parse_events(dumps([minimal_event(i) for i in range(3)]), max_events=3).events


def test_integers_beyond_64_bits_are_stored_exactly() -> None:
    body = dumps([minimal_event(1)])[:-2] + b',"big":123456789012345678901234567890,"neg":-18446744073709551617}]'
    parsed = parse_events(body)
    assert parsed.bodies[0].endswith(b',"big":123456789012345678901234567890,"neg":-18446744073709551617}')


def test_small_floats_are_stored_as_json_writes_them() -> None:
    parsed = parse_events(dumps([{**minimal_event(1), "score": 0.00001, "tiny": -7.185e-09}]))
    assert parsed.bodies[0].endswith(b',"score":1e-05,"tiny":-7.185e-09}')


def test_a_number_beyond_a_double_is_stored_as_before_not_as_null() -> None:
    # json reads 1e400 as infinity and always wrote it back as Infinity; the fast path must not turn it into null.
    parsed = parse_events(dumps([minimal_event(1)])[:-2] + b',"huge":1e400,"none":null}]')
    assert parsed.bodies[0].endswith(b',"huge":Infinity,"none":null}')


def test_fast_and_original_paths_agree_on_every_sample() -> None:
    from webhook_operator.api.encoding import compact_json_reference

    for path in event_files():
        body = path.read_bytes()
        value = json.loads(body)
        items = value["data"] if isinstance(value, dict) and "data" in value else value
        items = items if isinstance(items, list) else [items]
        if not isinstance(items[0], dict) or "eventType" not in items[0]:
            continue
        assert parse_events(body).bodies == [compact_json_reference(i) for i in items], path.name


@pytest.mark.parametrize(
    "body",
    [b'{"id":"a\nb"}', b'{"id":"\x00"}', b"[1,]", b'{"a":1,}', b"01", b"1.", b"+1", b'"\\x41"', b"\x0c[]", b"[1] x"],
)
def test_what_json_refuses_is_refused_with_json_s_own_message(body: bytes) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(body.decode("utf-8"))
    exc = expected.value
    assert refused(body).message == f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
