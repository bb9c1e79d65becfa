"""Loopback servers and helpers for the lean HTTP/1.1 client tests (test_http1*.py): raw asyncio servers that write
exactly the bytes a test wants, so framings aiohttp's own server never produces can be exercised."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.abc import ResolveResult

from webhook_operator.delivery.sender import AiohttpSender, Request

from .receivers import StaticResolver

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def post(url: str, *, timeout: float = 5.0, headers: dict[str, str] | None = None) -> Request:
    return Request(url, b'{"ok":true}', {"Content-Type": "application/json"} if headers is None else headers, timeout)


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 running ``handler`` per connection (it writes whatever bytes the test wants)."""
    writers: set[asyncio.StreamWriter] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.add(writer)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            writers.discard(writer)

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in list(writers):
            writer.transport.abort()  # handlers blocked in a read end with IncompleteReadError
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One whole request (head + Content-Length body); raises IncompleteReadError when the client hangs up."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def replying(reply: bytes, *, keep_open: bool = True) -> Handler:
    """Answer every request on a connection with ``reply``; hang up after the first if not ``keep_open``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(reply)
            await writer.drain()
            if not keep_open:
                return

    return handle


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def slow_server_app(
    active: list[int], peak: list[int], delay: float, arrived: asyncio.Event | None = None
) -> web.Application:
    """Answers after ``delay`` s, counting requests in progress (``active``, ``peak``); sets ``arrived`` on each."""

    async def slow(request: web.Request) -> web.Response:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        if arrived is not None:
            arrived.set()
        try:
            await asyncio.sleep(delay)
        finally:
            active[0] -= 1
        return web.Response(text="slow")

    app = web.Application()
    app.router.add_post("/", slow)
    return app


class ManyResolver(StaticResolver):
    """Answers every name with all of ``ips``, in order."""

    def __init__(self, ips: list[str]) -> None:
        super().__init__({})
        self.ips = ips

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        return [
            {"hostname": host, "host": ip, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
            for ip in self.ips
        ]


async def capture_head(sender: AiohttpSender, headers: dict[str, str]) -> list[bytes]:
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await read_request(reader))
        writer.write(OK)

    async with raw_server(handle) as port:
        outcome = await sender.send(post(f"http://127.0.0.1:{port}/", headers=headers))
    assert outcome.ok, outcome.error
    return heads[0].split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
