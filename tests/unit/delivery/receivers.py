"""Loopback test plumbing for delivery tests: real HTTP receivers, a static resolver and a connection log.

Nothing here sends traffic outside 127.0.0.0/8 or ::1: names resolve through ``StaticResolver`` (never DNS), and
``ConnectionLog`` records every socket the sender creates and fails the test on a non-loopback address (on top of the
session-wide tripwire in ``support.loopback``).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from support.loopback import OffLoopbackConnection, is_loopback


class StaticResolver(AbstractResolver):
    """Resolves names from a fixed map and records every lookup; unknown names fail like NXDOMAIN."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = dict(names)
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        try:
            ip = self.names[host]
        except KeyError:
            raise OSError(socket.EAI_NONAME, f"{host} is not in the static resolver") from None
        return [
            {
                "hostname": host,
                "host": ip,
                "port": port,
                "family": socket.AF_INET6 if ":" in ip else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


class ConnectionLog:
    """An aiohttp ``socket_factory`` that records the address of every socket about to connect."""

    def __init__(self) -> None:
        self.addresses: list[Any] = []

    def __call__(self, addr_info: Any) -> socket.socket:
        family, type_, proto, _, address = addr_info
        self.addresses.append(address)
        if not is_loopback(address):
            raise OffLoopbackConnection(f"sender tried to connect outside loopback: {address!r}")
        return socket.socket(family=family, type=type_, proto=proto)


@asynccontextmanager
async def serve(app: web.Application, *, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[TestServer]:
    """Serve ``app`` on 127.0.0.1 on a free port for the duration of the block."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=ssl_context)
    try:
        yield server
    finally:
        await server.close()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound then released, so connecting is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
