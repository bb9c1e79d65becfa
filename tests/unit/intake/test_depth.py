"""One nesting limit (issue 13, finding 5 and the RecursionError part of 9): every JSON document the intake and the
operations API accept nests at most ``MAX_DEPTH`` (64) levels; deeper is a 400 naming the limit and where, never a
500, on every path (the fast parser, the ``json`` fallback, a string-valued ``entity``, the redeliver body)."""

from __future__ import annotations

import json

import pytest

from webhook_operator.api.limits import MAX_DEPTH, deeper_than
from webhook_operator.intake.app import add_routes, build_app
from webhook_operator.intake.auth import BearerAuth, StaticTokens
from webhook_operator.intake.errors import IntakeError
from webhook_operator.intake.operations import operation_routes
from webhook_operator.intake.parsing import parse_events

from .helpers import AUTH, EVENTS, TOKEN, FakeSubmitter, dumps, intake, minimal_event, serve_app
from .test_operations_api import BASE, FakeBackend

LIMIT = f"nested deeper than {MAX_DEPTH} levels"


def nested(levels: int) -> str:
    """JSON text ``levels`` deep, an object outermost: objects and arrays alternating, strings with brackets and
    escapes inside (neither may count)."""
    text = '"x\\"]}[{"'
    for i in range(levels):
        text = f'{{"k{i}":{text},"s":"]]}}}}\\\\"}}' if (levels - i) % 2 else f'["[[{{",{text}]'
    return text


def test_the_helper_counts_levels_exactly() -> None:
    for levels in (1, 2, 63, 64, 65, 300):
        assert json.loads(nested(levels)) is not None
        assert deeper_than(nested(levels)) is (levels > MAX_DEPTH)


def test_an_event_65_levels_deep_is_refused_naming_the_limit_and_the_field() -> None:
    # the event object is level 1, so an entity 64 deep makes the post 65 deep
    body = dumps({**minimal_event(1), "entity": json.loads(nested(64))})
    with pytest.raises(IntakeError) as refused:
        parse_events(body)
    assert refused.value.status == 400 and refused.value.message == f"entity: {LIMIT}"


def test_64_levels_are_accepted() -> None:
    body = dumps({**minimal_event(1), "entity": json.loads(nested(63))})
    assert len(parse_events(body).events) == 1


def test_the_list_shape_names_the_event() -> None:
    events = [minimal_event(1), {**minimal_event(2), "extra": json.loads(nested(62))}]
    body = dumps({"data": events})  # {"data": [ {...} ]}: the event's own fields start at level 3
    with pytest.raises(IntakeError) as refused:
        parse_events(body)
    assert refused.value.message == f"data[1].extra: {LIMIT}"
    events[1] = {**minimal_event(2), "extra": json.loads(nested(61))}
    assert len(parse_events(dumps({"data": events})).events) == 2


@pytest.mark.parametrize("levels", [300, 990, 5000])  # beyond pydantic-core's parser; near and beyond json's
def test_the_fallback_path_is_checked_too(levels: int) -> None:
    body = ('{"id":"a","eventType":"entityCreated","entityType":"t","entityId":"e","timestamp":1,"entity":'
            + nested(levels) + "}").encode()  # fmt: skip
    with pytest.raises(IntakeError) as refused:
        parse_events(body)
    assert refused.value.status == 400 and LIMIT in refused.value.message


@pytest.mark.parametrize("levels", [65, 1000])
def test_a_string_valued_entity_is_held_to_the_limit_too(levels: int) -> None:
    body = dumps({"data": [minimal_event(1), {**minimal_event(2), "entity": nested(levels)}]})
    with pytest.raises(IntakeError) as refused:
        parse_events(body)
    assert refused.value.status == 400 and refused.value.message == f"data[1].entity: {LIMIT}"
    assert len(parse_events(dumps({**minimal_event(1), "entity": nested(MAX_DEPTH)})).events) == 1


async def test_a_deep_string_valued_entity_is_400_over_http_not_500() -> None:
    sub = FakeSubmitter()
    async with intake(sub) as client:
        response = await client.post(EVENTS, data=dumps({**minimal_event(1), "entity": nested(1000)}), headers=AUTH)
        body = await response.json()
        assert response.status == 400, body
        assert body == {"error": f"entity: {LIMIT}", "status": 400}
    assert not sub.calls


@pytest.mark.parametrize("levels", [65, 5000])
async def test_a_deep_redeliver_body_is_400_naming_the_limit(levels: int) -> None:
    backend = FakeBackend()
    app = build_app(FakeSubmitter(), tokens=StaticTokens([TOKEN]), allow_anonymous=False, hmac_secret=None)
    add_routes(app, operation_routes(backend), auth=BearerAuth(StaticTokens([TOKEN])))
    async with serve_app(app) as client:
        data = '{"eventIds":["a"],"to":' + nested(levels - 1) + "}"
        response = await client.post(f"{BASE}/redeliver", headers={"Authorization": f"Bearer {TOKEN}"}, data=data)
        body = await response.json()
        assert response.status == 400, body
        assert body["error"] == f"body: {LIMIT}"
        ok = await client.post(f"{BASE}/redeliver", headers={"Authorization": f"Bearer {TOKEN}"},
                               data='{"eventIds":["a"],"to":"archive"}')  # fmt: skip
        assert ok.status == 202
    assert [c[0] for c in backend.calls] == ["redeliver"]
