"""The intake over real HTTP on 127.0.0.1: shapes, status codes, auth, limits, and 202 only after the commit."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from aiohttp import web

from support.events import EVENTS_DIR, event_files
from webhook_operator.delivery.signing import openmetadata_signature
from webhook_operator.intake.app import add_routes, build_app
from webhook_operator.intake.auth import BearerAuth, FileTokens, StaticTokens

from .helpers import (
    AUTH,
    EVENTS,
    TOKEN,
    FakeSubmitter,
    dumps,
    expect_error,
    intake,
    minimal_event,
    om_signature,
    serve_app,
)

JSON = {"Content-Type": "application/json"}


# --- shapes ----------------------------------------------------------------------------------------------------------


async def test_single_object_is_accepted_with_counts() -> None:
    sub = FakeSubmitter()
    async with intake(sub) as client:
        resp = await client.post(EVENTS, data=dumps(minimal_event(1)), headers=AUTH)
        assert resp.status == 202
        assert await resp.json() == {"accepted": 1, "duplicates": 0, "queued": 0}
    assert [e.id for e in sub.events] == [minimal_event(1)["id"]]
    assert sub.bodies == [dumps(minimal_event(1))]


async def test_array_and_duplicate_ids_are_all_handed_to_the_submitter() -> None:
    sub = FakeSubmitter()
    items = [minimal_event(1), minimal_event(2), minimal_event(1)]
    async with intake(sub) as client:
        resp = await client.post(EVENTS, data=json.dumps(items), headers=AUTH)
        assert resp.status == 202
    assert [e.entity_id for e in sub.events] == ["e-1", "e-2", "e-1"]  # deduplication is the store's job
    assert len(sub.calls) == 1


async def test_openmetadata_list_shape_sample_file() -> None:
    sub = FakeSubmitter()
    path = EVENTS_DIR / "batch-openmetadata-list-shape.json"
    async with intake(sub) as client:
        resp = await client.post(EVENTS, data=path.read_bytes(), headers=AUTH)
        assert resp.status == 202
        assert (await resp.json())["accepted"] == 10
    assert sub.bodies == [dumps(item) for item in json.loads(path.read_text())["data"]]


async def test_all_forty_sample_events_accepted_one_by_one_and_as_an_array() -> None:
    sub = FakeSubmitter()
    files = event_files()
    assert len(files) == 40
    async with intake(sub) as client:
        for path in files:
            resp = await client.post(EVENTS, data=path.read_bytes(), headers=AUTH)
            assert resp.status == 202, (path.name, await resp.text())
        every = json.dumps([json.loads(p.read_text()) for p in files], ensure_ascii=False).encode()
        assert len(every) > 256 * 1024  # large enough to be parsed off the event loop
        resp = await client.post(EVENTS, data=every, headers=AUTH)
        assert resp.status == 202
        assert (await resp.json())["accepted"] == 40
    assert len(sub.events) == 80
    assert {e.event_type for e in sub.events} >= {"entityFieldsChanged", "entityNoChange", "entityRestored"}


async def test_unknown_event_type_and_entity_as_json_string_are_accepted() -> None:
    sub = FakeSubmitter()
    item = minimal_event(1, eventType="threadCreated", entity=json.dumps({"id": "e-1", "name": "t1"}))
    async with intake(sub) as client:
        resp = await client.post(EVENTS, data=dumps(item), headers=AUTH)
        assert resp.status == 202
    assert sub.events[0].event_type == "threadCreated" and sub.events[0].entity == {"id": "e-1", "name": "t1"}
    assert isinstance(json.loads(sub.bodies[0])["entity"], str)


async def test_openmetadata_destination_test_message_is_answered_200_and_nothing_is_submitted() -> None:
    sub = FakeSubmitter()
    async with intake(sub) as client:
        resp = await client.post(EVENTS, data=b'{"message": "This is a test message from OpenMetadata"}',
                                 headers=AUTH)  # fmt: skip
        assert resp.status == 200
        assert await resp.json() == {"accepted": 0, "duplicates": 0, "queued": 0}
    assert sub.calls == []


# --- 400 -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "body is not valid JSON: Expecting value at line 1 column 1"),
        (b"[]", "empty batch"),
        (dumps({"data": [minimal_event(0), {**minimal_event(1), "timestamp": None}]}), "data[1].timestamp: "),
        (dumps([{k: v for k, v in minimal_event(0).items() if k != "id"}]), "[0].id: Field required"),
        (dumps([minimal_event(0, eventType=["entityCreated"])]), "[0].eventType: Input should be a valid string"),
        (dumps([minimal_event(0, entity="<xml/>")]), "[0].entity: Value error, entity is a string but not valid"),
        (dumps([minimal_event(0, timestamp=1.5)]), "[0].timestamp: Input should be a valid integer"),
    ],
)
async def test_invalid_posts_are_400_naming_the_field_and_nothing_is_submitted(body: bytes, fragment: str) -> None:
    sub = FakeSubmitter()
    async with intake(sub) as client:
        await expect_error(await client.post(EVENTS, data=body, headers=AUTH), 400, fragment)
    assert sub.calls == []


# --- 401 -------------------------------------------------------------------------------------------------------------


async def test_bearer_token_required_wrong_refused_right_accepted() -> None:
    sub = FakeSubmitter()
    body = dumps(minimal_event(1))
    async with intake(sub) as client:
        resp = await client.post(EVENTS, data=body, headers=JSON)
        await expect_error(resp, 401, "missing bearer token")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        resp = await client.post(EVENTS, data=body, headers={**JSON, "Authorization": "Bearer nope"})
        await expect_error(resp, 401, "invalid bearer token")
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
        resp = await client.post(EVENTS, data=body, headers={**JSON, "Authorization": f"Basic {TOKEN}"})
        await expect_error(resp, 401, "must be 'Bearer <token>'")
        assert sub.calls == []
        resp = await client.post(EVENTS, data=body, headers={**JSON, "Authorization": f"bearer  {TOKEN} "})
        assert resp.status == 202


async def test_auth_comes_before_every_other_check() -> None:
    async with intake(ready=lambda: False, max_body=10) as client:
        resp = await client.post(EVENTS, data=b"x" * 100, headers={"Content-Type": "text/plain"})
        await expect_error(resp, 401, "missing bearer token")


async def test_anonymous_only_when_enabled_and_a_presented_token_is_still_checked() -> None:
    sub = FakeSubmitter()
    body = dumps(minimal_event(1))
    async with intake(sub, tokens=StaticTokens([TOKEN]), allow_anonymous=True) as client:
        assert (await client.post(EVENTS, data=body, headers=JSON)).status == 202
        resp = await client.post(EVENTS, data=body, headers={**JSON, "Authorization": "Bearer wrong"})
        await expect_error(resp, 401, "invalid bearer token")
    async with intake(sub, allow_anonymous=True) as client:  # no token source at all
        assert (await client.post(EVENTS, data=body, headers=JSON)).status == 202
    with pytest.raises(ValueError, match="anonymous"):
        build_app(sub, tokens=None, allow_anonymous=False, hmac_secret=None)


async def test_token_file_rotation_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# intake\nold-token\n")
    body = dumps(minimal_event(1))
    tokens = FileTokens(path, recheck_seconds=0.0)  # looks at the file on every request (default: once a second)
    async with intake(tokens=tokens) as client:
        old = {**JSON, "Authorization": "Bearer old-token"}
        new = {**JSON, "Authorization": "Bearer new-token"}
        assert (await client.post(EVENTS, data=body, headers=old)).status == 202
        assert (await client.post(EVENTS, data=body, headers=new)).status == 401
        path.write_text("new-token\n")
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
        assert (await client.post(EVENTS, data=body, headers=new)).status == 202
        assert (await client.post(EVENTS, data=body, headers=old)).status == 401


async def test_hmac_both_header_styles_verified_and_wrong_signature_refused() -> None:
    sub = FakeSubmitter()
    body = dumps(minimal_event(1, entityFullyQualifiedName="svc.顧客"))
    async with intake(sub, hmac_secret=b"hook-secret") as client:
        seed = {**AUTH, "X-OpenMetadata-Signature": openmetadata_signature("hook-secret", body)}
        assert (await client.post(EVENTS, data=body, headers=seed)).status == 202
        om = {**AUTH, "X-OM-Signature": om_signature(b"hook-secret", body)}
        assert (await client.post(EVENTS, data=body, headers=om)).status == 202
        assert len(sub.calls) == 2
        wrong = {**AUTH, "X-OM-Signature": om_signature(b"other", body)}
        await expect_error(await client.post(EVENTS, data=body, headers=wrong), 401, "X-OM-Signature does not match")
        await expect_error(await client.post(EVENTS, data=body, headers=AUTH), 401, "missing signature")
        altered = {**om}
        resp = await client.post(EVENTS, data=body.replace(b"e-1", b"e-2"), headers=altered)
        await expect_error(resp, 401, "X-OM-Signature does not match")
    assert len(sub.calls) == 2


# --- 503 and the commit ----------------------------------------------------------------------------------------------


async def test_store_unavailable_is_503_with_retry_after_and_nothing_recorded() -> None:
    sub = FakeSubmitter(fail=True)
    async with intake(sub) as client:
        resp = await client.post(EVENTS, data=dumps(minimal_event(1)), headers=AUTH)
        await expect_error(resp, 503, "nothing was accepted")
        assert resp.headers["Retry-After"] == "5"
    assert sub.calls == []


async def test_not_ready_is_503_and_the_submitter_is_not_called() -> None:
    sub = FakeSubmitter()
    ready = False
    async with intake(sub, ready=lambda: ready) as client:
        resp = await client.post(EVENTS, data=dumps(minimal_event(1)), headers=AUTH)
        await expect_error(resp, 503, "still opening its event store")
        assert resp.headers["Retry-After"] == "5"
        assert not sub.entered.is_set()
        ready = True
        assert (await client.post(EVENTS, data=dumps(minimal_event(1)), headers=AUTH)).status == 202


async def test_202_is_sent_only_after_the_submitter_returned() -> None:
    sub = FakeSubmitter(gate=asyncio.Event())
    async with intake(sub) as client:
        post = asyncio.create_task(client.post(EVENTS, data=dumps(minimal_event(1)), headers=AUTH))
        await asyncio.wait_for(sub.entered.wait(), timeout=5)
        await asyncio.sleep(0.1)
        assert not post.done()  # the store has not committed: no answer yet
        assert sub.gate is not None
        sub.gate.set()
        resp = await asyncio.wait_for(post, timeout=5)
        assert resp.status == 202 and sub.returned


# --- the app as a host for more routes -------------------------------------------------------------------------------


async def test_openapi_document_is_served_without_auth() -> None:
    async with intake() as client:
        resp = await client.get("/api/v1/openapi.json")
        assert resp.status == 200 and resp.content_type == "application/json"
        doc = await resp.json()
        assert doc["openapi"].startswith("3.1") and "/api/v1/events" in doc["paths"]


async def test_unknown_routes_and_methods_get_json_errors() -> None:
    async with intake() as client:
        await expect_error(await client.get("/nope"), 404, "Not Found: GET /nope")
        resp = await client.get(EVENTS)
        await expect_error(resp, 405, "Method Not Allowed")
        assert "POST" in resp.headers["Allow"]


async def test_more_routes_can_be_mounted_with_their_own_auth() -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": "ops"})

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("bug")

    app = build_app(FakeSubmitter(), tokens=StaticTokens([TOKEN]), allow_anonymous=False, hmac_secret=None)
    add_routes(app, [web.get("/api/v1/ops", hello)], auth=BearerAuth(StaticTokens(["ops-token"])))
    add_routes(app, [web.get("/api/v1/boom", boom)], auth=None)
    async with serve_app(app) as client:
        await expect_error(await client.get("/api/v1/ops", headers=AUTH), 401, "invalid bearer token")
        resp = await client.get("/api/v1/ops", headers={"Authorization": "Bearer ops-token"})
        assert await resp.json() == {"hello": "ops"}
        await expect_error(await client.get("/api/v1/boom"), 500, "internal error")
    with pytest.raises(TypeError, match="class-based"):
        add_routes(app, [web.view("/api/v1/view", web.View)], auth=None)
