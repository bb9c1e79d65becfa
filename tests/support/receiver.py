"""A real HTTP receiver on loopback that records what it gets and answers as a test scripts it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


async def serve_loopback(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on a free loopback port: its runner (to clean up) and its ``/hook`` URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook"


@dataclass
class Receiver:
    """Answers with ``status`` (or ``responder(request_number)``) and records every request it got."""

    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    responder: Callable[[int], tuple[int, dict[str, str]]] | None = None
    #: Status per request path (e.g. {"/failing": 503}); other paths use ``status``.
    status_by_path: dict[str, int] = field(default_factory=dict)
    #: Answer with the request's headers as JSON (to check that echoed credentials are masked in logs).
    echo: bool = False
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    runner: web.AppRunner | None = None
    url: str = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.responder:
            status, headers = self.responder(self.attempts)
        else:
            status, headers = self.status_by_path.get(request.path, self.status), self.headers
        if 200 <= status < 300:
            self.received.append(Received(request.path, dict(request.headers), body, time.time()))
        text = json.dumps(dict(request.headers)) if self.echo else ("ok" if status < 300 else "nope")
        return web.Response(status=status, headers=headers, text=text)

    async def start(self) -> Receiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner, self.url = await serve_loopback(app)
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def events(self) -> list[dict[str, Any]]:
        """Every delivered event object, flattening {"data": [...]} batches, in arrival order."""
        out: list[dict[str, Any]] = []
        for item in self.received:
            payload = item.json()
            out.extend(payload["data"] if isinstance(payload, dict) and "data" in payload else [payload])
        return out
