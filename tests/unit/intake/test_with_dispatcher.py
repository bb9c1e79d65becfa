"""The intake in front of the real Dispatcher and SqliteStore: 202 means committed, a repeated id is a duplicate.

Only the tests import delivery; the intake itself knows the dispatcher solely through the ``Submitter`` protocol.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.events import EVENTS_DIR, ROOT
from webhook_operator.delivery.dispatcher import Dispatcher
from webhook_operator.delivery.sender import Outcome, Request
from webhook_operator.graph import build_graph
from webhook_operator.intake.app import build_app
from webhook_operator.intake.auth import StaticTokens
from webhook_operator.intake.submitter import Submitter
from webhook_operator.store.sqlite import SqliteStore

from .helpers import AUTH, EVENTS, TOKEN, dumps, minimal_event, serve_app


def dispatcher_is_a_submitter(dispatcher: Dispatcher) -> Submitter:
    """Type-checked by the test below: the Dispatcher satisfies the intake's protocol structurally."""
    return dispatcher


def test_dispatcher_satisfies_submitter_under_mypy() -> None:
    """The project's mypy configuration covers the package, not the tests, so run it on this file explicitly."""
    this = Path(__file__).relative_to(ROOT)
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", str(this)], capture_output=True, text=True,
                            cwd=ROOT, timeout=240)  # fmt: skip
    assert "1 source file" in result.stdout, result.stdout + result.stderr  # mypy ran and checked this file
    mine = [line for line in result.stdout.splitlines() if line.startswith(str(this))]
    assert mine == [], "\n".join(mine)


class NoSender:
    """No Webhook is registered, so nothing may ever be sent."""

    async def send(self, request: Request) -> Outcome:
        raise AssertionError(f"unexpected delivery to {request.url}")

    async def close(self) -> None:
        return None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.db")
    await s.open()
    yield s
    await s.close()


async def test_real_dispatcher_accepts_and_reports_a_repeated_id_as_duplicate(store: SqliteStore) -> None:
    dispatcher = build_graph(store=store, sender=NoSender()).dispatcher
    app = build_app(dispatcher_is_a_submitter(dispatcher), tokens=StaticTokens([TOKEN]), allow_anonymous=False,
                    hmac_secret=None)  # fmt: skip
    try:
        async with serve_app(app) as client:
            body = dumps(minimal_event(1))
            first = await client.post(EVENTS, data=body, headers=AUTH)
            assert first.status == 202
            assert await first.json() == {"accepted": 1, "duplicates": 0, "queued": 0}
            again = await client.post(EVENTS, data=body, headers=AUTH)
            assert await again.json() == {"accepted": 0, "duplicates": 1, "queued": 0}
            both = dumps([minimal_event(2), minimal_event(2), minimal_event(1)])
            mixed = await client.post(EVENTS, data=both, headers=AUTH)
            assert await mixed.json() == {"accepted": 1, "duplicates": 2, "queued": 0}
    finally:
        await dispatcher.stop()


async def test_real_dispatcher_stores_the_body_as_received(store: SqliteStore) -> None:
    dispatcher = build_graph(store=store, sender=NoSender()).dispatcher
    app = build_app(dispatcher, tokens=StaticTokens([TOKEN]), allow_anonymous=False, hmac_secret=None)
    path = EVENTS_DIR / "batch-openmetadata-list-shape.json"
    try:
        async with serve_app(app) as client:
            resp = await client.post(EVENTS, data=path.read_bytes(), headers=AUTH)
            assert await resp.json() == {"accepted": 10, "duplicates": 0, "queued": 0}
    finally:
        await dispatcher.stop()
    items = json.loads(path.read_text())["data"]
    stored = {e.event_id: e.body for e in await store.events_by_id([item["id"] for item in items])}
    assert [stored[item["id"]] for item in items] == [dumps(item) for item in items]
