"""The lean HTTP/1.1 client's pool (real loopback servers): the connection cap and slot waits, the SSRF guard
deciding before any socket exists, address order, the idle sweep and closing.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from webhook_operator.delivery.http1_pool import Http1Pool
from webhook_operator.delivery.http1_request import parse_target
from webhook_operator.delivery.sender import AiohttpSender, OutcomeKind
from webhook_operator.delivery.ssrf import AddressPolicy, GuardedConnector

from .http1_servers import OK, ManyResolver, post, raw_server, read_request, replying, slow_server_app
from .receivers import ConnectionLog, StaticResolver, serve


async def test_pool_cap_bounds_connections(log: ConnectionLog) -> None:
    active, peak = [0], [0]
    sender = AiohttpSender(AddressPolicy(allow_loopback=True), limit=2, socket_factory=log)
    try:
        async with serve(await slow_server_app(active, peak, 0.1)) as server:
            url = f"http://127.0.0.1:{server.port}/"
            outcomes = await asyncio.gather(*(sender.send(post(url)) for _ in range(5)))
    finally:
        await sender.close()
    assert all(outcome.ok for outcome in outcomes)
    assert len(log.addresses) == 2 and peak[0] == 2


async def test_timeout_while_waiting_for_a_slot(log: ConnectionLog) -> None:
    active, peak = [0], [0]
    sender = AiohttpSender(AddressPolicy(allow_loopback=True), limit=1, socket_factory=log)
    try:
        async with serve(await slow_server_app(active, peak, 0.5)) as server:
            url = f"http://127.0.0.1:{server.port}/"
            first = asyncio.ensure_future(sender.send(post(url)))
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            waiting = await sender.send(post(url, timeout=0.1))
            assert time.perf_counter() - started < 0.4
            assert (await first).ok
            assert (await sender.send(post(url))).ok  # the slot was not leaked
    finally:
        await sender.close()
    assert waiting.kind is OutcomeKind.RETRYABLE and waiting.error == "timeout after 0.1 s"
    assert len(log.addresses) == 1


@pytest.mark.parametrize(
    ("ips", "reason"),
    [
        (["169.254.169.254"], "169.254.169.254 is link-local / cloud metadata"),
        (["10.0.0.1"], "10.0.0.1 is private (private ranges are not allowed)"),
        (["127.0.0.1", "169.254.169.254"], "169.254.169.254 is link-local / cloud metadata"),
    ],
)
async def test_ssrf_guard_decides_before_any_socket(log: ConnectionLog, ips: list[str], reason: str) -> None:
    resolver = ManyResolver(ips)
    sender = AiohttpSender(AddressPolicy(allow_loopback=True), resolver=resolver, socket_factory=log)
    try:
        outcome = await sender.send(post("http://hooks.test:8080/x"))
    finally:
        await sender.close()
    assert outcome.kind is OutcomeKind.PERMANENT
    assert outcome.error == f"refused to connect to hooks.test:8080: {reason}"
    assert log.addresses == [] and resolver.lookups == ["hooks.test"]


async def test_resolved_addresses_are_tried_in_order(log: ConnectionLog) -> None:
    async with raw_server(replying(OK)) as port:
        resolver = ManyResolver(["127.0.0.2", "127.0.0.1"])  # nothing listens on 127.0.0.2:port
        sender = AiohttpSender(AddressPolicy(allow_loopback=True), resolver=resolver, socket_factory=log)
        try:
            outcome = await sender.send(post(f"http://hooks.test:{port}/"))
        finally:
            await sender.close()
    assert outcome.ok, outcome.error
    assert log.addresses == [("127.0.0.2", port), ("127.0.0.1", port)]


async def test_unknown_name_fails_like_aiohttp(log: ConnectionLog) -> None:
    sender = AiohttpSender(AddressPolicy(), resolver=StaticResolver({}), socket_factory=log)
    try:
        outcome = await sender.send(post("http://nowhere.test/hook"))
    finally:
        await sender.close()
    assert outcome.error == "DNS resolution failed for nowhere.test: nowhere.test is not in the static resolver"
    assert log.addresses == []


async def test_idle_connections_are_closed_after_the_idle_timeout(log: ConnectionLog) -> None:
    connector = GuardedConnector(policy=AddressPolicy(allow_loopback=True), socket_factory=log)
    pool = Http1Pool(connector, limit=4, keep=100, drain=100, socket_factory=log, idle_timeout=0.1)
    try:
        async with raw_server(replying(OK)) as port:
            target = parse_target(f"http://127.0.0.1:{port}/")
            assert target is not None
            message = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            assert (await pool.request(target, message, 5)).status == 200
            assert pool.open_connections == 1
            await asyncio.sleep(0.3)
            assert pool.open_connections == 0
            assert (await pool.request(target, message, 5)).status == 200
    finally:
        await pool.close()
        await connector.close()
    assert len(log.addresses) == 2
    assert pool.open_connections == 0


async def test_close_closes_pooled_connections(log: ConnectionLog) -> None:
    closed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await reader.read()  # returns at EOF: the client closed its end
        closed.set()

    sender = AiohttpSender(AddressPolicy(allow_loopback=True), socket_factory=log)
    async with raw_server(handle) as port:
        assert (await sender.send(post(f"http://127.0.0.1:{port}/"))).ok
        await sender.close()
        await asyncio.wait_for(closed.wait(), 2)
    with pytest.raises(RuntimeError, match="closed"):
        await sender.send(post(f"http://127.0.0.1:{port}/"))


async def test_close_fails_requests_in_flight_and_waiting_for_a_slot(log: ConnectionLog) -> None:
    active, peak = [0], [0]
    sender = AiohttpSender(AddressPolicy(allow_loopback=True), limit=1, socket_factory=log)
    arrived = asyncio.Event()
    async with serve(await slow_server_app(active, peak, 3, arrived)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        in_flight = asyncio.ensure_future(sender.send(post(url)))
        waiting = asyncio.ensure_future(sender.send(post(url)))
        await asyncio.wait_for(arrived.wait(), 5)  # the first is at the receiver; the second waits for the slot
        started = time.perf_counter()
        await sender.close()
        outcomes = await asyncio.wait_for(asyncio.gather(in_flight, waiting), 1)
        assert time.perf_counter() - started < 1
    assert [outcome.kind for outcome in outcomes] == [OutcomeKind.RETRYABLE] * 2
    assert outcomes[0].error == "server disconnected without a complete response"
    assert outcomes[1].error == "request failed: ClientConnectionError"
    assert len(log.addresses) == 1
