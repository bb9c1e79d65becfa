"""The intake over the store's space budget (issue 13, finding 4): before the volume is full, posts are refused with
507 and a JSON body naming the budget, so OpenMetadata retries later and the volume keeps room for the work already
accepted; before, a catch-all Webhook with a missing Secret filled the 1Gi volume and then every post got a 503."""

from __future__ import annotations

from pathlib import Path

from webhook_operator.delivery.sender import Outcome, OutcomeKind, Request
from webhook_operator.graph import build_graph
from webhook_operator.intake.app import build_app
from webhook_operator.intake.auth import StaticTokens
from webhook_operator.store.sqlite import SqliteStore

from .helpers import AUTH, EVENTS, TOKEN, dumps, minimal_event, serve_app


class Nobody:
    async def send(self, request: Request) -> Outcome:
        return Outcome(OutcomeKind.SUCCESS, 200, 1.0)

    async def close(self) -> None:
        return None


async def test_over_the_budget_the_intake_answers_507_naming_the_budget(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db", max_bytes=300 * 1024, synchronous="NORMAL")
    graph = build_graph(store=store, sender=Nobody())
    await graph.open()
    try:
        app = build_app(graph.submitter, tokens=StaticTokens([TOKEN]), allow_anonymous=False, hmac_secret=None)
        padding = "x" * 30_000
        statuses = []
        async with serve_app(app) as client:
            for i in range(60):  # 1.8 MB offered to a 300 KiB budget
                resp = await client.post(EVENTS, data=dumps(minimal_event(i, entity={"pad": padding})), headers=AUTH)
                statuses.append(resp.status)
                if resp.status == 507:
                    body = await resp.json()
                    break
                await resp.release()
        assert statuses[0] == 202 and statuses[-1] == 507, statuses
        assert set(statuses[:-1]) == {202}
        assert body["status"] == 507 and "budget" in body["error"] and "300 KiB" in body["error"], body
        assert resp.headers.get("Retry-After"), "a sender is told to come back"
        assert (await store.usage()).over
    finally:
        await graph.close()
