"""The lean HTTP/1.1 client behind ``AiohttpSender`` for plain http:// (real loopback servers, no HTTP mocking):
response framings, connection reuse and closing, and the request bytes compared with aiohttp's.

Pool limits, the SSRF guard and closing are in test_http1_pool.py.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiohttp import web

from webhook_operator.delivery.http1_request import build_message, parse_target
from webhook_operator.delivery.sender import AiohttpSender, OutcomeKind
from webhook_operator.delivery.ssrf import AddressPolicy

from .http1_servers import OK, capture_head, post, raw_server, read_request, replying
from .receivers import ConnectionLog, serve


async def test_keep_alive_reuses_one_connection_and_skips_aiohttp(sender: AiohttpSender, log: ConnectionLog) -> None:
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            heads.append(await read_request(reader))
            writer.write(OK)

    async with raw_server(handle) as port:
        for _ in range(10):
            outcome = await sender.send(post(f"http://127.0.0.1:{port}/hook?a=1&b=%2F"))
            assert outcome.ok and outcome.response_body == "ok"
    assert log.addresses == [("127.0.0.1", port)]
    assert len(heads) == 10
    lines = heads[0].split(b"\r\n")
    assert lines[0] == b"POST /hook?a=1&b=/ HTTP/1.1"  # yarl's normalisation, exactly what aiohttp sends (below)
    assert f"Host: 127.0.0.1:{port}".encode() in lines
    assert b"User-Agent: wo-test/1" in lines and b"Content-Length: 11" in lines
    assert not any(line.lower().startswith(b"accept-encoding") for line in lines)  # the lean client's signature


async def test_connection_close_responses_get_a_new_connection_each(sender: AiohttpSender, log: ConnectionLog) -> None:
    async def closing(request: web.Request) -> web.Response:
        return web.Response(text="bye", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_post("/", closing)
    async with serve(app) as server:
        for _ in range(3):
            assert (await sender.send(post(f"http://127.0.0.1:{server.port}/"))).response_body == "bye"
    assert len(log.addresses) == 3


async def test_connection_closed_by_peer_while_idle_is_not_reused(sender: AiohttpSender, log: ConnectionLog) -> None:
    async with raw_server(replying(OK, keep_open=False)) as port:
        for _ in range(3):
            outcome = await sender.send(post(f"http://127.0.0.1:{port}/"))
            assert outcome.ok, outcome.error
            await asyncio.sleep(0.05)  # the FIN arrives while the connection is idle
    assert len(log.addresses) == 3


async def test_chunked_response_is_read_and_connection_reused(sender: AiohttpSender, log: ConnectionLog) -> None:
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    async with raw_server(replying(reply)) as port:
        for _ in range(2):
            assert (await sender.send(post(f"http://127.0.0.1:{port}/"))).response_body == "hello world"
    assert len(log.addresses) == 1


async def test_close_delimited_response(sender: AiohttpSender, log: ConnectionLog) -> None:
    reply = b"HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    async with raw_server(replying(reply, keep_open=False)) as port:
        for _ in range(2):
            outcome = await sender.send(post(f"http://127.0.0.1:{port}/"))
            assert outcome.ok and outcome.status_code == 202 and outcome.response_body == "until the end"
    assert len(log.addresses) == 2


async def test_response_in_tiny_pieces(sender: AiohttpSender, log: ConnectionLog) -> None:
    reply = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 120\r\nContent-Length: 4\r\n\r\nbusy"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            await read_request(reader)
            for i in range(len(reply)):
                writer.write(reply[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.001)

    async with raw_server(handle) as port:
        for _ in range(2):
            outcome = await sender.send(post(f"http://127.0.0.1:{port}/"))
            assert outcome.kind is OutcomeKind.RETRYABLE
            assert outcome.error == "HTTP 503 Service Unavailable"
            assert outcome.retry_after == 120 and outcome.response_body == "busy"
    assert len(log.addresses) == 1


async def test_100_continue_then_200(sender: AiohttpSender) -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone"
    async with raw_server(replying(reply)) as port:
        outcome = await sender.send(post(f"http://127.0.0.1:{port}/"))
    assert outcome.ok and outcome.status_code == 201 and outcome.response_body == "done"


@pytest.mark.parametrize("reply", [b"HTTP/1.1 abc OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"])
async def test_malformed_response_is_retryable(sender: AiohttpSender, log: ConnectionLog, reply: bytes) -> None:
    async with raw_server(replying(reply)) as port:
        first = await sender.send(post(f"http://127.0.0.1:{port}/"))
        second = await sender.send(post(f"http://127.0.0.1:{port}/"))
    for outcome in (first, second):
        assert outcome.kind is OutcomeKind.RETRYABLE and outcome.status_code is None
        assert outcome.error is not None and outcome.error.startswith("invalid HTTP response: ")
    assert len(log.addresses) == 2  # a connection that answered garbage is never reused


async def test_endless_response_head_is_refused(sender: AiohttpSender) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        for _ in range(10_000):  # 160 MB if nobody stopped reading
            writer.write(b"a" * 16384)
            await writer.drain()

    async with raw_server(handle) as port:
        started = time.perf_counter()
        outcome = await sender.send(post(f"http://127.0.0.1:{port}/", timeout=10))
    assert time.perf_counter() - started < 5
    assert outcome.kind is OutcomeKind.RETRYABLE
    assert outcome.error == "invalid HTTP response: response head larger than 65536 bytes"


async def test_disconnect_mid_head_is_retryable(sender: AiohttpSender) -> None:
    async with raw_server(replying(b"HTTP/1.1 200 OK\r\nContent-Le", keep_open=False)) as port:
        outcome = await sender.send(post(f"http://127.0.0.1:{port}/"))
    assert outcome.kind is OutcomeKind.RETRYABLE
    assert outcome.error == "server disconnected without a complete response"


@pytest.mark.parametrize(("size", "connections"), [(900, 1), (5000, 2)])
async def test_body_beyond_drain_limit_closes_the_connection(log: ConnectionLog, size: int, connections: int) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"z" * size
    sender = AiohttpSender(
        AddressPolicy(allow_loopback=True), max_response_body=100, mask_margin=0, max_drain_bytes=1000,
        socket_factory=log,
    )  # fmt: skip
    try:
        async with raw_server(replying(reply)) as port:
            for _ in range(2):
                outcome = await sender.send(post(f"http://127.0.0.1:{port}/"))
                assert outcome.ok and outcome.response_body == "z" * 100 and outcome.response_more == ""
    finally:
        await sender.close()
    assert len(log.addresses) == connections


async def test_timed_out_connection_is_not_reused(sender: AiohttpSender, log: ConnectionLog) -> None:
    delays = [0.5, 0.0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(delays.pop(0))
            writer.write(OK)

    async with raw_server(handle) as port:
        late = await sender.send(post(f"http://127.0.0.1:{port}/", timeout=0.1))
        assert late.kind is OutcomeKind.RETRYABLE and late.error == "timeout after 0.1 s"
        assert (await sender.send(post(f"http://127.0.0.1:{port}/"))).ok
    assert len(log.addresses) == 2


async def test_caller_headers_replace_automatic_ones(sender: AiohttpSender) -> None:
    lines = await capture_head(sender, {"host": "hooks.example", "User-Agent": "custom/2", "X-Case": "Kept"})
    names = [line.split(b":", 1)[0].lower() for line in lines]
    assert sorted(names) == sorted([b"host", b"user-agent", b"x-case", b"accept", b"content-type", b"content-length"])
    assert b"host: hooks.example" in lines and b"User-Agent: custom/2" in lines and b"X-Case: Kept" in lines


async def test_caller_content_length_goes_through_aiohttp_without_duplicates(sender: AiohttpSender) -> None:
    lines = await capture_head(sender, {"Content-Length": "11"})
    assert [line for line in lines if line.lower().startswith(b"content-length")] == [b"Content-Length: 11"]
    assert any(line.lower().startswith(b"accept-encoding") for line in lines)  # aiohttp's signature


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "application/json", "User-Agent": "custom/2", "X-Sig": "v1=abc"},
        {"host": "hooks.example", "accept": "text/plain", "X-Unicode": "Größe ✓"},
        {"HOST": "b.example", "x-a": "1", "Authorization": "Bearer t", "Content-type": "text/plain"},
    ],
)
async def test_headers_match_aiohttp(sender: AiohttpSender, headers: dict[str, str]) -> None:
    sent: list[list[bytes]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_request(reader)
            sent.append(sorted(head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")))
            writer.write(OK)

    async with raw_server(handle) as port:
        url = f"http://127.0.0.1:{port}/p"
        assert (await sender.send(post(url, headers=headers))).ok
        assert (await sender.send(post(url, headers={**headers, "Accept-Encoding": "gzip, deflate"}))).ok
    lean, aiohttp = sent
    assert lean == [line for line in aiohttp if not line.startswith(b"Accept-Encoding")]


async def test_limit_per_host_keeps_requests_on_aiohttp(log: ConnectionLog) -> None:
    sender = AiohttpSender(AddressPolicy(allow_loopback=True), limit_per_host=1, socket_factory=log)
    try:
        lines = await capture_head(sender, {"X-A": "1"})
    finally:
        await sender.close()
    assert any(line.lower().startswith(b"accept-encoding") for line in lines)


async def test_request_line_matches_aiohttp(sender: AiohttpSender) -> None:
    lines: dict[bool, bytes] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_request(reader)
            lines[b"accept-encoding" in head.lower()] = head.split(b"\r\n", 1)[0]
            writer.write(OK)

    async with raw_server(handle) as port:
        url = f"http://127.0.0.1:{port}/a%2Fb/%7Ec?x=%2F&y=%20z&&q"
        assert (await sender.send(post(url))).ok
        assert (await sender.send(post(url, headers={"Accept-Encoding": "gzip, deflate"}))).ok
    assert lines[False] == lines[True]


@pytest.mark.parametrize("headers", [{"Bad Name": "x"}, {"X-Nul": "a\x00b"}, {"X-Lf": "a\nSECRET"}])
async def test_bad_headers_are_permanent_and_nothing_is_sent(
    sender: AiohttpSender, log: ConnectionLog, headers: dict[str, str]
) -> None:
    outcome = await sender.send(post("http://127.0.0.1:9/", headers=headers))
    assert outcome.kind is OutcomeKind.PERMANENT
    assert outcome.error == "invalid request: bad URL or header value"
    assert log.addresses == []


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1/", "http://user:pw@127.0.0.1/", "http://bücher.example/", "http://host.example./", "http://"],
)
def test_unusual_urls_are_left_to_aiohttp(url: str) -> None:
    assert parse_target(url) is None


@pytest.mark.parametrize(
    "headers",
    [{"x-a": "1", "X-A": "2"}, {"Transfer-Encoding": "chunked"}, {"Expect": "100-continue"}, {"connection": "close"}],
)
def test_unusual_headers_are_left_to_aiohttp(headers: dict[str, str]) -> None:
    target = parse_target("http://127.0.0.1/")
    assert target is not None
    assert build_message(target, headers, "ua", b"") is None
    assert build_message(target, {"X-Plain": "1"}, "ua", b"") is not None


def test_plain_urls_are_taken() -> None:
    target = parse_target("http://[::1]:8080/a/b?c=d#frag")
    assert target is not None
    assert (target.host, target.port, target.host_header) == ("::1", 8080, "[::1]:8080")
    assert target.request_line == "POST /a/b?c=d HTTP/1.1\r\n"
    default = parse_target("http://Hooks.Example")
    assert default is not None and default.host_header == "hooks.example" and default.request_line.startswith("POST / ")
