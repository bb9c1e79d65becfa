"""The same-run ceiling of the peer shape: a bare aiohttp relay, what a webhook forwarder costs with nothing else.

It takes one JSON event per POST on ``/api/v1/events``, parses it (as any forwarder must), answers 202 at once and
forwards the body to the target URL from a task, through one client session (aiohttp's default 100 connections).
No persistence, no ordering, no retries, no filters, no formats: the shape of Flux's notification-controller with
its generic provider, written with the same libraries the operator uses. The operator bench runs it in its own
process beside the operator and measures it exactly like the operator (delivered/s and latency at the receiver,
CPU and peak RSS from /proc), so every operator figure can be given as a ratio of this one.

    python bench/relay.py PORT_FILE TARGET_URL
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

_tasks: set[asyncio.Task[None]] = set()


def main() -> None:
    port_file, target = Path(sys.argv[1]), sys.argv[2]
    session: aiohttp.ClientSession | None = None

    async def forward(body: bytes) -> None:
        assert session is not None
        try:
            async with session.post(target, data=body, headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
        except aiohttp.ClientError as exc:  # a relay without retries loses it; say so instead of dying
            print(f"relay: forward failed: {exc}", file=sys.stderr)

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        json.loads(body)  # a forwarder has to look at what it forwards
        task = asyncio.ensure_future(forward(body))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
        return web.json_response({"accepted": 1}, status=202)

    async def start(app: web.Application) -> None:
        nonlocal session
        session = aiohttp.ClientSession()

    async def stop(app: web.Application) -> None:
        if session is not None:
            await session.close()

    app = web.Application()
    app.router.add_post("/api/v1/events", events)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port_file.write_text(str(sock.getsockname()[1]))
    web.run_app(app, sock=sock, access_log=None, print=None)


if __name__ == "__main__":
    main()
