"""The SSRF guard on the lean HTTP/1.1 client's path: every spelling of a refused address, and DNS answers served
from aiohttp's cache, are judged before any socket exists. Names and numeric spellings resolve through
``NumericResolver`` (no DNS); ``ConnectionLog`` fails the test on any attempt to leave loopback."""

from __future__ import annotations

import contextlib
import socket

import pytest
from aiohttp.abc import ResolveResult

from webhook_operator.delivery.http1_request import parse_target
from webhook_operator.delivery.sender import AiohttpSender, OutcomeKind, Request
from webhook_operator.delivery.ssrf import AddressPolicy

from .http1_servers import OK, post, raw_server, replying
from .receivers import ConnectionLog, StaticResolver

METADATA = "169.254.169.254 is link-local / cloud metadata"
#: aiohttp's own ``_resolve_host`` (shared by both paths) refuses the legacy numeric forms ``getaddrinfo`` maps.
LEGACY = "invalid URL (is not a canonical IPv4 address)"


class NumericResolver(StaticResolver):
    """Names from the map; anything else that ``inet_aton`` reads (decimal, octal, hex, ``a.b`` and ``a.b.c``
    forms) as ``getaddrinfo`` reads it, without a lookup; the rest fails like NXDOMAIN."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.names:
            with contextlib.suppress(OSError):
                self.names[host] = socket.inet_ntoa(socket.inet_aton(host))
        return await super().resolve(host, port, family)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://2852039166/latest/meta-data/", LEGACY),  # decimal
        ("http://0xa9fea9fe/", METADATA),  # hex
        ("http://0xa9.0xfe.0xa9.0xfe/", METADATA),
        ("http://0251.0376.0251.0376/", LEGACY),  # octal
        ("http://169.254.43518/", LEGACY),  # a.b.c
        ("http://169.16689662/", LEGACY),  # a.b
        ("HTTP://169.254.169.254/", METADATA),
        ("hTtP://169.254.169.254:80/x", METADATA),
        ("http://MeTaData.Test/", METADATA),
        ("http://[::ffff:169.254.169.254]/", "(IPv4-mapped 169.254.169.254) is link-local / cloud metadata"),
        ("http://[::ffff:a9fe:a9fe]/", "(IPv4-mapped 169.254.169.254) is link-local / cloud metadata"),
        ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe (NAT64 169.254.169.254) is link-local / cloud metadata"),
        ("http://[2002:a9fe:a9fe::1]/", "2002:a9fe:a9fe::1 (6to4 169.254.169.254) is link-local / cloud metadata"),
        ("http://[::169.254.169.254]/", "::a9fe:a9fe (IPv4-compatible 169.254.169.254) is link-local / cloud metadata"),
        ("http://127.1/", LEGACY),
        ("http://0/", LEGACY),
        ("http://0x7f.1/", "127.0.0.1 is loopback (loopback is not allowed)"),  # hex: not caught as a literal
        ("http://0x0/", "0.0.0.0 is unspecified"),
        ("http://[::]/", ":: is unspecified"),
    ],
)
async def test_every_spelling_of_a_refused_address_is_refused_on_the_lean_path(url: str, error: str) -> None:
    assert parse_target(url) is not None, "this spelling is not on the lean path"
    log = ConnectionLog()
    resolver = NumericResolver({"metadata.test": "169.254.169.254"})
    sender = AiohttpSender(AddressPolicy(), resolver=resolver, socket_factory=log)
    try:
        outcome = await sender.send(post(url))
    finally:
        await sender.close()
    assert outcome.kind is OutcomeKind.PERMANENT
    assert outcome.error is not None and outcome.error.endswith(error)
    assert log.addresses == []


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254./", "http://169%2e254.169.254/", "http://[fe80::1%25eth0]/", "http://u@169.254.169.254/"],
)
async def test_spellings_left_to_aiohttp_connect_nowhere_either(url: str) -> None:
    assert parse_target(url) is None
    log = ConnectionLog()
    sender = AiohttpSender(AddressPolicy(), resolver=NumericResolver({}), socket_factory=log)
    try:
        outcome = await sender.send(post(url))
    finally:
        await sender.close()
    assert not outcome.ok and log.addresses == []


async def test_a_cached_dns_answer_is_judged_again() -> None:
    log = ConnectionLog()
    resolver = NumericResolver({"cached.test": "169.254.169.254"})
    sender = AiohttpSender(AddressPolicy(), resolver=resolver, socket_factory=log)
    try:
        outcomes = [await sender.send(post("http://cached.test/")) for _ in range(3)]
    finally:
        await sender.close()
    assert [outcome.kind for outcome in outcomes] == [OutcomeKind.PERMANENT] * 3
    assert log.addresses == []


async def test_a_pooled_connection_never_carries_a_name_to_a_new_address() -> None:
    # A name first resolves to an allowed address (the connection is pooled per name), then to a refused one:
    # the pooled connection still goes where it went; a new connection asks the guard and is refused.
    log = ConnectionLog()
    resolver = StaticResolver({"rebind.test": "127.0.0.1"})
    sender = AiohttpSender(AddressPolicy(allow_loopback=True), resolver=resolver, socket_factory=log)
    try:
        async with raw_server(replying(OK)) as port:
            url = f"http://rebind.test:{port}/"
            assert (await sender.send(post(url))).ok
            resolver.names["rebind.test"] = "169.254.169.254"
            assert (await sender.send(post(url))).ok  # the pooled connection, to 127.0.0.1
            other = await sender.send(Request("http://rebind.test:9/", b"", {}, 5))  # not in the DNS cache
    finally:
        await sender.close()
    assert log.addresses == [("127.0.0.1", port)]
    assert other.kind is OutcomeKind.PERMANENT and other.error is not None and METADATA in other.error
