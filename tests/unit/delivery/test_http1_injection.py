"""What reaches the wire from hostile URLs and header values on the lean HTTP/1.1 client's path: control characters
in the host, CR/LF (raw, percent-encoded, or as Unicode line separators) in the path, query and header values, and
a host name the resolver cannot encode. Loopback only; names resolve through test resolvers."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp.abc import ResolveResult

from webhook_operator.delivery.http1_request import parse_target
from webhook_operator.delivery.sender import AiohttpSender, OutcomeKind
from webhook_operator.delivery.ssrf import AddressPolicy

from .http1_servers import OK, post, raw_server, read_request
from .receivers import ConnectionLog, StaticResolver

ALLOW_LOOPBACK = AddressPolicy(allow_loopback=True)
INVALID_REQUEST = "invalid request: bad URL or header value"


class IdnaResolver(StaticResolver):
    """Encodes the name as ``socket.getaddrinfo`` does before any lookup (aiohttp's default ThreadedResolver), so
    a name Python cannot encode fails here exactly as it would there: with a ``UnicodeError`` (a ``ValueError``)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        host.encode("idna")
        return await super().resolve(host, port, family)


async def test_a_name_the_resolver_cannot_encode_is_a_permanent_outcome_as_on_aiohttp() -> None:
    name = "a" * 64 + ".test"  # a DNS label longer than 63: passes the CRD's isURL, refused by the idna codec
    url = f"http://{name}/hook"
    assert parse_target(url) is not None
    sender = AiohttpSender(ALLOW_LOOPBACK, resolver=IdnaResolver({name: "127.0.0.1"}))
    try:
        lean = await sender.send(post(url))
        via_aiohttp = await sender.send(post(url, headers={"Accept-Encoding": "identity"}))
    finally:
        await sender.close()
    assert (via_aiohttp.kind, via_aiohttp.error) == (OutcomeKind.PERMANENT, INVALID_REQUEST)
    assert (lean.kind, lean.error) == (via_aiohttp.kind, via_aiohttp.error)


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x0b", "\x0c", "\x1b", "\x7f"])
async def test_a_control_character_in_the_host_never_reaches_the_wire(char: str) -> None:
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await read_request(reader))
        writer.write(OK)

    name = f"a{char}b.test"
    sender = AiohttpSender(ALLOW_LOOPBACK, resolver=StaticResolver({name: "127.0.0.1"}))
    try:
        async with raw_server(handle) as port:
            outcome = await sender.send(post(f"http://{name}:{port}/"))
    finally:
        await sender.close()
    assert heads == [], "a Host header with a control character was sent"
    assert (outcome.kind, outcome.error) == (OutcomeKind.PERMANENT, INVALID_REQUEST)


async def test_unicode_line_separators_and_encoded_crlf_stay_inside_their_line(sender: AiohttpSender) -> None:
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            heads.append(await read_request(reader))
            writer.write(OK)

    headers = {"X-A": "v\u2028X-Injected: 1", "X-B": "w\u0085X-Injected: 2", "X-C": "t\tab", "X-D": "\u2029"}
    async with raw_server(handle) as port:
        url = f"http://127.0.0.1:{port}/p%0D%0AX-Injected:%203/\r\nq?x=%0d%0aX-Injected:%204#\r\nX-Injected: 5"
        assert parse_target(url) is not None
        outcome = await sender.send(post(url, headers=headers))
    assert outcome.ok, outcome.error
    lines = heads[0].split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert not any(line.lower().startswith(b"x-injected") for line in lines)
    assert lines[0].startswith(b"POST /p%0D%0AX-Injected:%203/q?x=%0D%0AX-Injected:%204 HTTP/1.1")
    assert "X-A: v\u2028X-Injected: 1".encode() in lines and b"X-C: t\tab" in lines


@pytest.mark.parametrize("name", ["Host", "X-Sig"])
async def test_crlf_in_a_header_value_is_refused_before_anything_is_sent(name: str) -> None:
    log = ConnectionLog()
    sender = AiohttpSender(ALLOW_LOOPBACK, socket_factory=log)
    try:
        outcome = await sender.send(post("http://127.0.0.1:9/", headers={name: "h\r\nX-Injected: 1"}))
    finally:
        await sender.close()
    assert (outcome.kind, outcome.error, log.addresses) == (OutcomeKind.PERMANENT, INVALID_REQUEST, [])
