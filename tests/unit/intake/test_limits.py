"""Size and media-type limits over real HTTP: 413 by Content-Length, by chunked reading, before 100-continue; 415."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from webhook_operator.intake.app import is_json_content_type

from .helpers import AUTH, EVENTS, TOKEN, Client, FakeSubmitter, dumps, expect_error, intake, minimal_event

# --- 413 / 415 -------------------------------------------------------------------------------------------------------


async def test_body_over_the_limit_by_content_length_is_413() -> None:
    sub = FakeSubmitter()
    async with intake(sub, max_body=1000) as client:
        body = dumps([minimal_event(i) for i in range(20)])
        assert len(body) > 1000
        await expect_error(await client.post(EVENTS, data=body, headers=AUTH), 413, "larger than the limit of 1000")
    assert sub.calls == []


async def raw_request(client: Client, head: str) -> tuple[bytes, dict[str, str], bytes]:
    """Send only a request head (no body) and read one response: (status line, headers, body)."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(head.encode())
        await writer.drain()
        raw_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        status, *lines = raw_head.decode().strip().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout=5)
        return status.encode(), headers, body
    finally:
        writer.close()
        await writer.wait_closed()


async def test_content_length_413_is_answered_without_reading_the_body() -> None:
    """Announce 1 GB and send none of it: the answer comes at once, and asks to close the connection."""
    async with intake(max_body=1000) as client:
        status, headers, body = await raw_request(
            client,
            f"POST {EVENTS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n",
        )
    assert status.startswith(b"HTTP/1.1 413")
    assert headers["connection"] == "close"
    assert json.loads(body) == {"error": "body of 1000000000 bytes is larger than the limit of 1000", "status": 413}


async def test_expect_100_continue_is_refused_before_upload_when_too_large_or_unauthorized() -> None:
    sub = FakeSubmitter()
    async with intake(sub, max_body=1000) as client:
        for auth_line, expected in ((f"Authorization: Bearer {TOKEN}\r\n", b"413"), ("", b"401")):
            status, headers, body = await raw_request(
                client,
                f"POST {EVENTS} HTTP/1.1\r\nHost: x\r\n{auth_line}Content-Type: application/json\r\n"
                "Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
            )
            assert status.startswith(b"HTTP/1.1 " + expected), status  # not "100 Continue"
            assert headers["connection"] == "close"
            assert json.loads(body)["status"] == int(expected)
    assert sub.calls == []


async def test_expect_100_continue_then_accepted() -> None:
    sub = FakeSubmitter()
    async with intake(sub) as client:
        resp = await client.post(EVENTS, data=dumps(minimal_event(1)), headers=AUTH, expect100=True)
        assert resp.status == 202
    assert len(sub.calls) == 1


async def test_chunked_body_over_the_limit_is_413() -> None:
    sub = FakeSubmitter()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'[{"id":"1","padding":"'
        for _ in range(8):
            yield b"x" * 512
        yield b'"}]'

    async with intake(sub, max_body=2048) as client:
        resp = await client.post(EVENTS, data=chunks(), headers=AUTH)
        assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
        await expect_error(resp, 413, "body is larger than the limit of 2048 bytes")
    assert sub.calls == []


async def test_chunked_body_under_the_limit_is_accepted() -> None:
    sub = FakeSubmitter()
    body = dumps(minimal_event(1))

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    async with intake(sub, max_body=len(body)) as client:
        assert (await client.post(EVENTS, data=chunks(), headers=AUTH)).status == 202
    assert sub.bodies == [body]


async def test_too_many_events_is_413() -> None:
    async with intake(max_events=2) as client:
        body = dumps([minimal_event(i) for i in range(3)])
        await expect_error(await client.post(EVENTS, data=body, headers=AUTH), 413, "too many events")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None,
                                          "application/json; charset=latin-1"])  # fmt: skip
async def test_non_json_content_type_is_415(content_type: str | None) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if content_type:
        headers["Content-Type"] = content_type
    async with intake() as client:
        resp = await client.post(
            EVENTS, data=dumps(minimal_event(1)), headers=headers, skip_auto_headers=["Content-Type"]
        )
        await expect_error(resp, 415, "must be")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.openmetadata+json",
        "application/json;charset=UTF8",
    ],
)
async def test_json_content_types_are_accepted(content_type: str) -> None:
    async with intake() as client:
        headers = {**AUTH, "Content-Type": content_type}
        assert (await client.post(EVENTS, data=dumps(minimal_event(1)), headers=headers)).status == 202


def test_json_content_type_predicate() -> None:
    assert is_json_content_type("application/json") and is_json_content_type("application/problem+json")
    assert not is_json_content_type("text/json") and not is_json_content_type("application/jsonx")
