"""The intake in front of the real Dispatcher and a PostgreSQL store: 202 means committed, and while the database
is gone every post is answered 503 (Retry-After) with nothing half-accepted, and the logs never show the DSN's
password; once it is back, the same operator accepts again without a restart."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from support import postgres
from webhook_operator.graph import build_graph
from webhook_operator.intake.app import build_app
from webhook_operator.intake.auth import StaticTokens
from webhook_operator.store.postgres import PostgresStore

from ..intake.helpers import AUTH, EVENTS, TOKEN, dumps, minimal_event, serve_app
from ..intake.test_with_dispatcher import NoSender


@pytest.fixture
async def store() -> AsyncIterator[PostgresStore]:
    s = PostgresStore(postgres.fresh_database(), connect_timeout=2.0)
    await s.open()
    yield s
    await s.close()


async def test_intake_answers_503_while_postgres_is_gone_and_202_when_it_is_back(
    store: PostgresStore, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher = build_graph(store=store, sender=NoSender()).dispatcher
    app = build_app(dispatcher, tokens=StaticTokens([TOKEN]), allow_anonymous=False, hmac_secret=None)
    database = postgres.TEST_DATABASE
    try:
        async with serve_app(app) as client:
            first = await client.post(EVENTS, data=dumps(minimal_event(1)), headers=AUTH)
            assert first.status == 202 and (await first.json())["accepted"] == 1
            await postgres.set_connectable(database, False)
            try:
                with caplog.at_level(logging.ERROR):
                    refused = await client.post(EVENTS, data=dumps([minimal_event(2), minimal_event(3)]), headers=AUTH)
                assert refused.status == 503 and refused.headers.get("Retry-After")
                assert "nothing was accepted" in (await refused.text())
            finally:
                await postgres.set_connectable(database, True)
            assert postgres.server().password not in caplog.text and "store unavailable" in caplog.text
            assert await store.events_by_id([minimal_event(2)["id"], minimal_event(3)["id"]]) == []
            again = await client.post(EVENTS, data=dumps([minimal_event(2), minimal_event(3), minimal_event(1)]),
                                      headers=AUTH)  # fmt: skip
            assert again.status == 202
            assert await again.json() == {"accepted": 2, "duplicates": 1, "queued": 0}, "the 503 left no trace"
    finally:
        await dispatcher.stop()
