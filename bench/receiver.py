"""Loopback receiver for benchmarks, run as its own process so it does not share the sender's event loop.

It reads and JSON-parses every body (the same work for the bare-client ceiling and for the engine) and records
the arrival time of every event id, which the benchmark fetches from GET /stats to compute latency.

For the slow-receiver run it also counts, at their maximum since the last reset: requests in flight at once
(``max_in_flight``: handlers of /slow/ running), connections open at once (``max_connections``: every TCP connection
the server holds, from aiohttp's ``Server.connection_made``/``connection_lost``, the benchmark's own polling
connection included) and connections open at once that have carried a /slow/ request (``max_slow_connections``:
the sender's connections to the slow endpoint only).

    python bench/receiver.py PORT_FILE
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

arrivals: dict[str, float] = {}
state = {
    "requests": 0,
    "events": 0,
    "in_flight": 0,
    "max_in_flight": 0,
    "connections": 0,
    "max_connections": 0,
    "slow_connections": 0,
    "max_slow_connections": 0,
}
#: Open connections that have carried a /slow/ request (by protocol object; dropped when the connection closes).
_slow_protocols: set[object] = set()
#: Seconds a request to /slow/{n} waits before it is answered (a receiver that takes its time).
SLOW_SECONDS = 1.0


def _ids(payload: Any) -> list[str]:
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        return [str(item.get("eventId", "")) for item in payload["data"]]
    if isinstance(payload, dict):
        return [str(payload.get("eventId") or payload.get("id") or "")]
    return []


async def hook(request: web.Request) -> web.Response:
    payload = json.loads(await request.read())
    now = time.time()
    state["requests"] += 1
    for event_id in _ids(payload):
        state["events"] += 1
        arrivals.setdefault(event_id, now)
    return web.Response(status=204)


async def slow(request: web.Request) -> web.Response:
    """Like ``hook``, answered after SLOW_SECONDS; counts requests in flight at once (the most ever seen)."""
    state["in_flight"] += 1
    state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
    if request.protocol not in _slow_protocols:
        _slow_protocols.add(request.protocol)
        state["slow_connections"] = len(_slow_protocols)
        state["max_slow_connections"] = max(state["max_slow_connections"], len(_slow_protocols))
    try:
        body = await request.read()
        await asyncio.sleep(SLOW_SECONDS)
        now = time.time()
        state["requests"] += 1
        for event_id in _ids(json.loads(body)):
            state["events"] += 1
            arrivals.setdefault(event_id, now)
        return web.Response(status=204)
    finally:
        state["in_flight"] -= 1


async def stats(request: web.Request) -> web.Response:
    return web.json_response({**state, "arrivals": arrivals})


async def count(request: web.Request) -> web.Response:
    return web.json_response(state)


async def reset(request: web.Request) -> web.Response:
    arrivals.clear()
    state.update(
        requests=0,
        events=0,
        max_in_flight=state["in_flight"],
        max_connections=state["connections"],
        max_slow_connections=state["slow_connections"],
    )
    return web.Response(status=204)


def count_connections(server: web.Server) -> None:
    """Wrap aiohttp's low-level server so that it counts the TCP connections it holds."""
    made, lost = server.connection_made, server.connection_lost

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        made(handler, transport)
        state["connections"] += 1
        state["max_connections"] = max(state["max_connections"], state["connections"])

    def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
        lost(handler, exc)
        state["connections"] -= 1
        if handler in _slow_protocols:
            _slow_protocols.discard(handler)
            state["slow_connections"] = len(_slow_protocols)

    server.connection_made = connection_made  # type: ignore[method-assign]
    server.connection_lost = connection_lost  # type: ignore[method-assign]


async def serve(app: web.Application, sock: socket.socket) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert runner.server is not None
    count_connections(runner.server)
    await web.SockSite(runner, sock).start()
    await asyncio.Event().wait()


def main() -> None:
    port_file = Path(sys.argv[1])
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app.router.add_post("/hook/{n}", hook)
    app.router.add_post("/slow/{n}", slow)
    app.router.add_get("/stats", stats)
    app.router.add_get("/count", count)
    app.router.add_post("/reset", reset)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port_file.write_text(str(sock.getsockname()[1]))
    asyncio.run(serve(app, sock))


if __name__ == "__main__":
    main()
