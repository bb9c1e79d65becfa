"""Adversarial tests of the lean HTTP/1.1 client (``http1*.py``): hostile receivers (never reading, answering
early, answering twice, interim floods, slowloris), cancellation storms against the pool's slots, and outcomes
compared with the aiohttp path. Everything runs on loopback; names resolve through test resolvers, never DNS.

The SSRF guard on the lean path is in test_http1_ssrf.py, hostile URLs and header values in test_http1_injection.py.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import socket
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.abc import ResolveResult

from webhook_operator.delivery.http1_pool import Http1Pool
from webhook_operator.delivery.http1_request import parse_target
from webhook_operator.delivery.sender import AiohttpSender, Outcome, OutcomeKind, Request
from webhook_operator.delivery.ssrf import AddressPolicy, GuardedConnector

from .http1_servers import OK, post, raw_server, read_request, replying, slow_server_app
from .receivers import ConnectionLog, StaticResolver, serve

#: Larger than what the loopback socket buffers of both ends take from a peer that does not read (~4.5 MB here),
#: so part of it stays in the client transport's own write buffer.
HUGE = b"x" * (16 * 1024 * 1024)
ALLOW_LOOPBACK = AddressPolicy(allow_loopback=True)


class SocketLog(ConnectionLog):
    """A ``ConnectionLog`` that also keeps the sockets it made, to see whether the client really closed them."""

    def __init__(self) -> None:
        super().__init__()
        self.sockets: list[socket.socket] = []

    def __call__(self, addr_info: Any) -> socket.socket:
        sock = super().__call__(addr_info)
        self.sockets.append(sock)
        return sock


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="lean"),
        pytest.param(  # aiohttp advises a stream for bodies over 1 MiB; this one must outgrow the socket buffers
            {"Accept-Encoding": "identity"},
            id="aiohttp",
            marks=pytest.mark.filterwarnings("ignore:Sending a large body"),
        ),
    ],
)
async def test_a_receiver_that_never_reads_gets_its_socket_closed_at_the_timeout(headers: dict[str, str]) -> None:
    # A transport closed with unsent data waits (forever) for the peer to read it: the socket and the unsent part
    # of the body would outlive the request, uncounted by the pool's cap. A tenant's receiver that accepts and
    # never reads, fed a large templated body, would leak one socket and megabytes per attempt. On both clients
    # (a caller-set Accept-Encoding sends the request through aiohttp, the path https endpoints always take).
    log, done = SocketLog(), asyncio.Event()

    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()

    sender = AiohttpSender(ALLOW_LOOPBACK, socket_factory=log)
    try:
        async with raw_server(never_reads) as port:
            outcome = await sender.send(Request(f"http://127.0.0.1:{port}/", HUGE, headers, 0.3))
            await asyncio.sleep(0.05)
            open_sockets = [sock for sock in log.sockets if sock.fileno() != -1]
            done.set()
    finally:
        await sender.close()
    assert outcome.error == "timeout after 0.3 s"
    assert open_sockets == [], "the socket outlived the request"


async def test_an_early_answer_does_not_pool_a_connection_whose_request_is_still_unsent() -> None:
    # The receiver answers after the head and never reads the body. aiohttp keeps such a connection out of the
    # pool until the body is written; reusing it queues the next request behind megabytes nobody reads.
    log, done = ConnectionLog(), asyncio.Event()

    async def answers_early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await done.wait()

    sender = AiohttpSender(ALLOW_LOOPBACK, socket_factory=log)
    try:
        async with raw_server(answers_early) as port:
            url = f"http://127.0.0.1:{port}/"
            try:
                assert (await sender.send(Request(url, HUGE, {}, 5))).ok
                second = await sender.send(post(url, timeout=2))
            finally:
                done.set()
    finally:
        await sender.close()
    assert second.ok, second.error
    assert len(log.addresses) == 2


async def test_cancelling_many_requests_frees_every_slot_and_cancels_cleanly() -> None:
    # Cancelling everything at once (a worker shutdown): the requests in flight give their slots back and wake
    # waiters whose slots were cancelled a moment before; those must still end with CancelledError.
    log = ConnectionLog()
    connector = GuardedConnector(policy=ALLOW_LOOPBACK, socket_factory=log)
    pool = Http1Pool(connector, limit=2, keep=100, drain=100, socket_factory=log)
    active, peak, arrived = [0], [0], asyncio.Event()
    message = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    try:
        async with serve(await slow_server_app(active, peak, 1, arrived)) as server:
            target = parse_target(f"http://127.0.0.1:{server.port}/")
            assert target is not None
            tasks = [asyncio.ensure_future(pool.request(target, message, 5)) for _ in range(12)]
            await asyncio.wait_for(arrived.wait(), 5)
            await asyncio.sleep(0.05)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert [type(result).__name__ for result in results] == ["CancelledError"] * 12
            assert pool.open_connections == 0
        async with raw_server(replying(OK)) as port:
            target = parse_target(f"http://127.0.0.1:{port}/")
            assert target is not None
            assert (await pool.request(target, message, 2)).status == 200
    finally:
        await pool.close()
        await connector.close()


class HangingResolver(StaticResolver):
    """Never answers until ``release`` is set: requests stay in the connecting phase."""

    def __init__(self) -> None:
        super().__init__({"slow.test": "127.0.0.1"})
        self.release = asyncio.Event()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        await self.release.wait()
        return await super().resolve(host, port, family)


async def test_requests_cancelled_or_timed_out_while_connecting_give_their_slots_back() -> None:
    log, resolver = ConnectionLog(), HangingResolver()
    connector = GuardedConnector(policy=ALLOW_LOOPBACK, resolver=resolver, socket_factory=log)
    pool = Http1Pool(connector, limit=2, keep=100, drain=100, socket_factory=log)
    message = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    try:
        async with raw_server(replying(OK)) as port:
            target = parse_target(f"http://slow.test:{port}/")
            assert target is not None
            tasks = [asyncio.ensure_future(pool.request(target, message, 5)) for _ in range(6)]
            timed_out = [asyncio.ensure_future(pool.request(target, message, 0.1)) for _ in range(2)]
            await asyncio.sleep(0.05)
            assert pool.open_connections == 2  # two connecting, six waiting for a slot
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, *timed_out, return_exceptions=True)
            assert [type(result).__name__ for result in results] == ["CancelledError"] * 6 + ["TimeoutError"] * 2
            assert pool.open_connections == 0
            resolver.release.set()
            assert (await pool.request(target, message, 2)).status == 200
            assert pool.open_connections == 1
    finally:
        await pool.close()
        await connector.close()


async def test_a_request_cancelled_while_waiting_for_a_slot_when_the_sender_closes_ends_cancelled() -> None:
    log = ConnectionLog()
    sender = AiohttpSender(ALLOW_LOOPBACK, limit=1, socket_factory=log)
    active, peak, arrived = [0], [0], asyncio.Event()
    async with serve(await slow_server_app(active, peak, 1, arrived)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        in_flight = asyncio.ensure_future(sender.send(post(url)))
        await asyncio.wait_for(arrived.wait(), 5)
        waiting = asyncio.ensure_future(sender.send(post(url)))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await sender.close()  # pops the cancelled slot before its task runs
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not (await in_flight).ok


class NoDelayRefused(socket.socket):
    """Some platforms (macOS, BSD) refuse TCP_NODELAY with EINVAL on a connection the peer already reset; asyncio's
    transport sets it while ``create_connection`` builds the transport, so the OSError comes out of there."""

    def setsockopt(self, *args: Any) -> None:
        if args[:2] == (socket.IPPROTO_TCP, socket.TCP_NODELAY):
            raise OSError(errno.EINVAL, "Invalid argument")
        super().setsockopt(*args)


async def test_a_refused_socket_option_is_not_a_crash() -> None:
    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, _ = addr_info
        return NoDelayRefused(family, type_, proto)

    sender = AiohttpSender(ALLOW_LOOPBACK, socket_factory=factory)
    try:
        async with raw_server(replying(OK)) as port:
            outcome = await sender.send(post(f"http://127.0.0.1:{port}/"))
    finally:
        await sender.close()
        with warnings.catch_warnings():  # asyncio leaves the half-built transport unclosed: collect it here
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    # aiohttp's _wrap_create_connection turns any OSError there into a ClientConnectorError: the same text
    assert (outcome.kind, outcome.error) == (OutcomeKind.RETRYABLE, f"Invalid argument to 127.0.0.1:{port}")


Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def two_connections(first: bytes, then: bytes) -> Reply:
    """The first connection answers ``first`` (and keeps quiet afterwards), every later one ``then``."""
    seen = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen[0] += 1
        reply = first if seen[0] == 1 else then
        while True:
            await read_request(reader)
            writer.write(reply)
            reply = b""  # a connection that was answered twice never answers again

    return handle


@pytest.mark.parametrize(
    "first",
    [
        OK + b"HTTP/1.1 500 Smuggled\r\nContent-Length: 0\r\n\r\n",  # a second response in the same write
        b"HTTP/1.1 204 No Content\r\nContent-Length: 45\r\n\r\nHTTP/1.1 500 Smuggled\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 Smuggled\r\n\r\n",
    ],
)
async def test_a_response_nobody_asked_for_is_never_the_next_requests_answer(first: bytes) -> None:
    log = ConnectionLog()
    sender = AiohttpSender(ALLOW_LOOPBACK, socket_factory=log)
    try:
        async with raw_server(two_connections(first, OK)) as port:
            url = f"http://127.0.0.1:{port}/"
            outcomes = [await sender.send(post(url)) for _ in range(2)]
    finally:
        await sender.close()
    assert outcomes[1].ok and outcomes[1].status_code == 200, outcomes[1].error
    assert all(outcome.error is None or "Smuggled" not in outcome.error for outcome in outcomes)


async def test_an_unsolicited_response_on_an_idle_connection_closes_it(
    sender: AiohttpSender, log: ConnectionLog
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(OK)
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 500 Smuggled\r\nContent-Length: 0\r\n\r\n")

    async with raw_server(handle) as port:
        for _ in range(2):
            outcome = await sender.send(post(f"http://127.0.0.1:{port}/"))
            assert outcome.ok, outcome.error
            await asyncio.sleep(0.1)
    assert len(log.addresses) == 2


async def test_a_flood_of_interim_responses_is_bounded(sender: AiohttpSender) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for _ in range(100_000):
            writer.write(b"HTTP/1.1 102 Processing\r\n\r\n")
            await writer.drain()

    async with raw_server(handle) as port:
        outcome = await sender.send(post(f"http://127.0.0.1:{port}/", timeout=10))
    assert outcome.error == "invalid HTTP response: response head larger than 65536 bytes"


async def test_a_head_sent_one_byte_at_a_time_is_cut_by_the_timeout(sender: AiohttpSender) -> None:
    async def slowloris(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
            if reader.at_eof():  # the client gave up
                return
            writer.write(bytes([byte]))
            await asyncio.sleep(0.01)

    async with raw_server(slowloris) as port:
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = await sender.send(post(f"http://127.0.0.1:{port}/", timeout=0.3))
        assert loop.time() - started < 1.5
    assert outcome.error == "timeout after 0.3 s"


async def lean_and_aiohttp(reply: bytes, *, keep_open: bool = True, **options: Any) -> tuple[Outcome, Outcome]:
    """The same reply through the lean client and through aiohttp (a caller Accept-Encoding keeps it there)."""
    sender = AiohttpSender(ALLOW_LOOPBACK, **options)
    try:
        async with raw_server(replying(reply, keep_open=keep_open)) as port:
            url = f"http://127.0.0.1:{port}/"
            lean = await sender.send(post(url))
            via_aiohttp = await sender.send(post(url, headers={"Accept-Encoding": "identity"}))
    finally:
        await sender.close()
    return lean, via_aiohttp


def comparable(outcome: Outcome) -> tuple[object, ...]:
    return (
        outcome.kind,
        outcome.status_code,
        outcome.error,
        outcome.response_body,
        outcome.retry_after,
        outcome.response_more,
    )


@pytest.mark.parametrize(
    ("reply", "keep_open"),
    [
        (b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nRetry-After: 3000\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 302 Found\r\nLocation: /a\r\nLocation: http://b.test/\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n0123456789-SECRET-straddles-it", True),
        (
            b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n"
            b"10\r\n89-SECRET-strad\n\r\n0\r\n\r\n",
            True,
        ),
        (b"HTTP/1.0 200 OK\r\n\r\n0123456789-SECRET-until-close", False),
        (b"HTTP/1.1 503\r\nRetry-After: 5\r\nConnection: close\r\n\r\n", False),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Slow Down\r\nRetry-After: 9\r\nContent-Length: 2\r\n\r\nno", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789-SECRET-cut-short", False),
    ],
)
async def test_outcomes_match_aiohttp(reply: bytes, keep_open: bool) -> None:
    lean, via_aiohttp = await lean_and_aiohttp(reply, keep_open=keep_open, max_response_body=12, mask_margin=8)
    assert comparable(lean) == comparable(via_aiohttp)
