"""An in-memory Submitter and a real loopback server around the intake app, for the intake tests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from webhook_operator.api.events import ChangeEvent
from webhook_operator.intake.app import build_app
from webhook_operator.intake.auth import StaticTokens, TokenSource
from webhook_operator.store.base import StoreUnavailable

TOKEN = "s3cret-token"
EVENTS = "/api/v1/events"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@dataclass(frozen=True)
class Result:
    accepted: int
    duplicates: int
    queued: int


@dataclass
class FakeSubmitter:
    """Records every submission; can fail like a broken store, or hold each call until released."""

    calls: list[tuple[list[ChangeEvent], list[bytes] | None]] = field(default_factory=list)
    fail: bool = False
    gate: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    returned: bool = False

    async def submit(self, events: Sequence[ChangeEvent], bodies: Sequence[bytes] | None = None) -> Result:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise StoreUnavailable("disk I/O error")
        self.calls.append((list(events), list(bodies) if bodies is not None else None))
        self.returned = True
        return Result(accepted=len(events), duplicates=0, queued=0)

    @property
    def events(self) -> list[ChangeEvent]:
        return [event for events, _ in self.calls for event in events]

    @property
    def bodies(self) -> list[bytes]:
        return [body for _, bodies in self.calls for body in bodies or []]


Client = TestClient[web.Request, web.Application]


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[Client]:
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


@asynccontextmanager
async def intake(
    submitter: FakeSubmitter | None = None,
    *,
    tokens: TokenSource | None = None,
    allow_anonymous: bool = False,
    hmac_secret: bytes | None = None,
    max_body: int = 8 * 1024 * 1024,
    max_events: int = 10_000,
    ready: Callable[[], bool] = lambda: True,
) -> AsyncIterator[Client]:
    """The intake app on a real 127.0.0.1 port; tokens default to ``{TOKEN}``."""
    app = build_app(
        submitter or FakeSubmitter(),
        tokens=tokens if tokens is not None or allow_anonymous else StaticTokens([TOKEN]),
        allow_anonymous=allow_anonymous,
        hmac_secret=hmac_secret,
        max_body=max_body,
        max_events=max_events,
        ready=ready,
    )
    async with serve_app(app) as client:
        yield client


def minimal_event(i: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-0000-0000-{i:012d}",
        "eventType": "entityCreated",
        "entityType": "table",
        "entityId": f"e-{i}",
        "timestamp": 1_700_000_000_000 + i,
        **extra,
    }


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def om_signature(secret: bytes, body: bytes) -> str:
    """What OpenMetadata's server sends in X-OM-Signature."""
    return "sha256=" + base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()


async def expect_error(response: ClientResponse, status: int, fragment: str) -> dict[str, object]:
    body = await response.json()
    assert response.status == status, body
    assert body["status"] == status
    assert fragment in body["error"], body
    return dict(body)
