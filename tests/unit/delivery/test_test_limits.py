"""Test deliveries cannot be used to fill the store everyone shares (issue 13 review, after finding 4).

Reproduced first on the code without limits: 1,200 tests against the tenant's own receiver answering 4 KiB pushed a
4 MiB store over its budget in about a second, and the intake then refused every tenant's events (StoreFull).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.operations import OperationError
from webhook_operator.api.webhook import WebhookSpec
from webhook_operator.delivery.sender import Outcome, OutcomeKind
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.delivery.test_limits import TEST_BODY_CHARS, WEBHOOK_BURST, WEBHOOK_INTERVAL
from webhook_operator.graph import Graph, NullStatus, build_graph
from webhook_operator.store.base import AttemptOutcome, AttemptQuery
from webhook_operator.store.sqlite import SqliteStore

from .fakes import Clock, ScriptedSender

BUDGET = 4 * 1024 * 1024


def target(key: str) -> WebhookTarget:
    spec = WebhookSpec.model_validate({
        "webhookType": "Generic", "batchSize": 1, "eventFilters": [{"eventType": "entityCreated"}],
        "webhookConfig": {"endpoint": "http://receiver.test/hook", "timeout": 5},
    })  # fmt: skip
    return WebhookTarget(key=key, spec=spec)


def event(i: int) -> ChangeEvent:
    return ChangeEvent.model_validate({
        "id": f"ev-{i}", "eventType": "entityCreated", "entityType": "table", "entityId": f"e-{i}",
        "timestamp": 1_700_000_000_000 + i,
    })  # fmt: skip


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.clock = Clock()
        self.store = SqliteStore(tmp / "store.db", clock=self.clock, max_bytes=BUDGET)
        self.sender = ScriptedSender()
        self.sender.default = Outcome(OutcomeKind.SUCCESS, 200, 1.0, response_body="Z" * 4096)
        self.graph: Graph = build_graph(store=self.store, sender=self.sender, status=NullStatus(), clock=self.clock)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(tmp_path)
    await r.graph.open()
    yield r
    await r.graph.close()


async def test_a_test_flood_cannot_make_the_intake_refuse_events(rig: Rig) -> None:
    for key in ("ns/a", "ns/b"):
        await rig.graph.dispatcher.register(target(key))
    sent = refused = 0
    for _ in range(1200):
        rig.clock.now += 1.0
        try:
            await rig.graph.operations.test("ns/a", "tenant-a")
            sent += 1
        except OperationError as exc:
            assert exc.status == 429 and "retry in" in exc.message
            refused += 1
    assert sent <= WEBHOOK_BURST + 1200 / WEBHOOK_INTERVAL + 1 and refused > 1000
    usage = await rig.store.usage()
    assert usage.budget_bytes is not None and usage.used_bytes < 0.5 * usage.budget_bytes
    await rig.graph.dispatcher.submit([event(1)])  # the intake still accepts (StoreFull would raise)
    lines = await rig.store.attempts("ns/a", AttemptQuery(outcome=AttemptOutcome.TEST, limit=1000))
    assert lines and all(len(line.response_body) <= TEST_BODY_CHARS + 1 for line in lines)


async def test_rate_per_webhook_and_per_namespace(rig: Rig) -> None:
    for i in range(12):
        await rig.graph.dispatcher.register(target(f"ns/w{i}"))
    await rig.graph.dispatcher.register(target("other/w0"))
    for _ in range(WEBHOOK_BURST):
        await rig.graph.operations.test("ns/w0", "alice")
    with pytest.raises(OperationError, match="retry in 10 s") as info:
        await rig.graph.operations.test("ns/w0", "alice")
    assert info.value.status == 429
    rig.clock.now += WEBHOOK_INTERVAL
    await rig.graph.operations.test("ns/w0", "alice")  # refilled
    # The namespace had 10, spent 3, got 5 back in those 10 s (capped at 10) and spent 1: 9 left for fresh Webhooks.
    for i in range(1, 10):
        await rig.graph.operations.test(f"ns/w{i}", "alice")
    with pytest.raises(OperationError, match="per namespace"):
        await rig.graph.operations.test("ns/w10", "alice")
    await rig.graph.operations.test("other/w0", "bob")  # another tenant is not affected


async def test_one_test_in_flight_per_webhook(rig: Rig) -> None:
    await rig.graph.dispatcher.register(target("ns/a"))
    gate = asyncio.Event()
    rig.sender.gates["http://receiver.test/hook"] = gate
    first = asyncio.ensure_future(rig.graph.operations.test("ns/a", "alice"))
    await asyncio.sleep(0.05)
    with pytest.raises(OperationError, match="already in flight"):
        await rig.graph.operations.test("ns/a", "alice")
    gate.set()
    assert (await first).ok
    await rig.graph.operations.test("ns/a", "alice")  # the slot is free again


async def test_no_tests_while_the_store_is_nearly_full(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    await rig.graph.dispatcher.register(target("ns/a"))
    real = rig.store.usage

    async def nearly_full() -> object:
        usage = await real()
        return type(usage)(used_bytes=int(0.95 * BUDGET), budget_bytes=BUDGET)

    monkeypatch.setattr(rig.store, "usage", nearly_full)
    with pytest.raises(OperationError, match="nearly full") as info:
        await rig.graph.operations.test("ns/a", "alice")
    assert info.value.status == 503 and rig.sender.requests == []
