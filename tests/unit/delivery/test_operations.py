"""Operations on the real dispatcher, store and sender against loopback receivers: test deliveries, resume, skip,
redeliver (order, ranges, other webhooks) and the request-annotation bookkeeping."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from support.receiver import Receiver
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.operations import OperationError, RedeliverRequest
from webhook_operator.api.webhook import WebhookSpec
from webhook_operator.delivery.annotations import AnnotationRequests
from webhook_operator.delivery.dispatcher import Dispatcher
from webhook_operator.delivery.operations import Operations
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.delivery.sender import AiohttpSender
from webhook_operator.delivery.ssrf import AddressPolicy
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.graph import NullStatus, build_graph
from webhook_operator.store.base import AttemptOutcome, AttemptQuery, Store
from webhook_operator.store.sqlite import SqliteStore

A = "events.open-metadata.org/"


class Observer(NullStatus):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []
        self.last_test: dict[str, Mapping[str, object]] = {}
        self.handled: dict[str, dict[str, str]] = {}

    def record_event(self, key: str, type: str, reason: str, message: str) -> None:
        self.events.append((key, type, reason, message))

    def set_last_test(self, key: str, last_test: Mapping[str, object]) -> None:
        self.last_test[key] = last_test

    def set_handled(self, key: str, operation: str, value: str) -> None:
        self.handled.setdefault(key, {})[operation] = value

    def reasons(self) -> list[str]:
        return [e[2] for e in self.events]


def event(i: int, entity_type: str = "table") -> ChangeEvent:
    return ChangeEvent.model_validate({
        "id": f"ev-{i:04d}", "eventType": "entityCreated", "entityType": entity_type, "entityId": f"e-{i}",
        "timestamp": 1_700_000_000_000 + i, "entity": {"id": f"e-{i}", "name": f"t{i}"},
    })  # fmt: skip


def target(url: str, name: str = "ns/hook", *, entities: list[str] | None = None, batch: int = 1,
           secret: str | None = None, **extra: Any) -> WebhookTarget:  # fmt: skip
    spec = WebhookSpec.model_validate({
        "webhookType": "Generic", "batchSize": batch,
        "eventFilters": [{"eventType": "entityCreated", "entities": entities or ["table"]}],
        "webhookConfig": {"endpoint": url, "timeout": 5, "headers": {"X-Team": "data"}},
    })  # fmt: skip
    return WebhookTarget(key=name, spec=spec, secrets=(secret,) if secret else (), **extra)


class Rig:
    def __init__(self, dispatcher: Dispatcher, store: Store, ops: Operations, annotations: AnnotationRequests,
                 observer: Observer) -> None:  # fmt: skip
        self.dispatcher, self.store, self.ops, self.observer = dispatcher, store, ops, observer
        self.annotations = annotations


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    observer = Observer()
    sender = AiohttpSender(AddressPolicy(allow_loopback=True))
    graph = build_graph(store=SqliteStore(tmp_path / "store.db"), sender=sender, status=observer,
                        retry=RetryPolicy((0.02, 0.02)), user_agent="test-agent")  # fmt: skip
    await graph.open()
    yield Rig(graph.dispatcher, graph.store, graph.operations, graph.annotations, observer)
    await graph.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver(echo=True).start()
    yield r
    await r.stop()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def base(receiver: Receiver) -> str:
    return receiver.url.rsplit("/", 1)[0]


async def test_test_delivery_uses_the_real_format_headers_and_signature(rig: Rig, receiver: Receiver) -> None:
    await rig.dispatcher.register(target(receiver.url, batch=5, secret="sign-me"))
    result = await rig.ops.test("ns/hook", "alice", trigger="t1")
    assert result.ok and result.status_code == 200 and result.requested_by == "alice" and result.latency_ms > 0
    (request,) = receiver.received
    body = request.json()
    assert set(body) == {"data", "paging"} and body["paging"] == {"total": 1}  # batchSize > 1: the list shape
    (sent,) = body["data"]
    assert (sent["eventType"], sent["entityType"], sent["test"], sent["id"]) == ("webhookTest", "webhookTest", True,
                                                                                 result.event_id)  # fmt: skip
    assert sent["userName"] == "alice" and sent["entityFullyQualifiedName"] == "ns.hook"
    assert request.headers["X-Webhook-Operator-Test"] == "true" and request.headers["X-Team"] == "data"
    assert request.headers["User-Agent"] == "test-agent"
    expected = "sha256=" + hmac.new(b"sign-me", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-OpenMetadata-Signature"] == expected
    (line,) = await rig.store.attempts("ns/hook", AttemptQuery(outcome=AttemptOutcome.TEST))
    assert line.event_ids == [result.event_id] and line.note == "test requested by alice" and line.status_code == 200
    assert rig.observer.last_test["ns/hook"]["trigger"] == "t1" and rig.observer.reasons() == ["WebhookTested"]
    assert (await rig.store.lane_state("ns/hook")).pending == 0 and rig.dispatcher.snapshot("ns/hook").delivered == 0  # type: ignore[union-attr]


async def test_failing_test_masks_secrets_and_never_touches_the_queue(rig: Rig, receiver: Receiver) -> None:
    receiver.status = 500
    hook = target(receiver.url, secret_headers={"Authorization": "Bearer top-secret-value"})
    await rig.dispatcher.register(hook)
    result = await rig.ops.test("ns/hook", "bob")
    assert not result.ok and result.status_code == 500 and result.error == "HTTP 500 Internal Server Error"
    (line,) = await rig.store.attempts("ns/hook", AttemptQuery())
    assert "top-secret-value" not in line.response_body and "***" in line.response_body  # the echoed header
    assert rig.observer.events[-1][1:3] == ("Warning", "WebhookTestFailed")
    snapshot = rig.dispatcher.snapshot("ns/hook")
    assert snapshot is not None and snapshot.failed == 0 and snapshot.state.value == "active"
    broken = target(receiver.url, name="ns/broken", config_error="Secret ns/hmac not found")
    await rig.dispatcher.register(broken)
    refused = await rig.ops.test("ns/broken", "bob")
    assert not refused.ok and refused.error == "configuration error: Secret ns/hmac not found"
    assert len(receiver.received) == 0
    with pytest.raises(OperationError) as info:
        await rig.ops.test("ns/unknown", "bob")
    assert info.value.status == 404


async def test_skip_and_resume_with_nothing_to_do_are_409(rig: Rig, receiver: Receiver) -> None:
    await rig.dispatcher.register(target(receiver.url))
    for call in (rig.ops.resume("ns/hook", "x"), rig.ops.skip("ns/hook", "x")):
        with pytest.raises(OperationError) as info:
            await call
        assert info.value.status == 409


async def test_resume_sends_the_held_batch_at_once_even_while_waiting_for_a_retry(tmp_path: Path) -> None:
    graph = build_graph(store=SqliteStore(tmp_path / "s.db"), sender=AiohttpSender(AddressPolicy(allow_loopback=True)),
                        status=Observer(), retry=RetryPolicy((3600.0,)), user_agent="t")  # fmt: skip
    await graph.open()
    dispatcher, ops = graph.dispatcher, graph.operations
    recv = await Receiver(status=503).start()
    try:
        await dispatcher.register(target(recv.url))
        await dispatcher.submit([event(1), event(2)])
        await until(lambda: recv.attempts == 1)
        assert dispatcher.snapshot("ns/hook").state.value == "awaitingRetry"  # type: ignore[union-attr]
        recv.status = 200
        assert "held batch goes first" in await ops.resume("ns/hook", "carol")
        await until(lambda: len(recv.received) == 2)
        assert [e["eventId"] for e in recv.events()] == ["ev-0001", "ev-0002"]
        notes = [r.note for r in await graph.store.attempts("ns/hook", AttemptQuery(outcome=AttemptOutcome.RESUMED))]
        assert notes == ["resumed by carol"]
    finally:
        await graph.close()
        await recv.stop()


async def test_redeliver_by_ids_and_by_range_in_acceptance_order(rig: Rig, receiver: Receiver) -> None:
    url = base(receiver)
    await rig.dispatcher.register(target(f"{url}/main"))
    await rig.dispatcher.register(target(f"{url}/elsewhere", "other/hook", entities=["dashboard"]))
    t0 = time.time()
    await rig.dispatcher.submit([event(i) for i in range(1, 5)] + [event(9, "dashboard")])
    await until(lambda: len(receiver.received) == 5)
    # Registered afterwards, so it was sent none of them; its filters admit the tables (re-applied on ``to``).
    await rig.dispatcher.register(target(f"{url}/archive", "ns/archive", entities=["table", "dashboard"]))

    result = await rig.ops.redeliver("ns/hook", RedeliverRequest(("ev-0003", "ev-0001", "gone")), "dave")
    assert (result.target, result.event_ids, result.missing) == ("ns/hook", ["ev-0001", "ev-0003"], ["gone"])
    await until(lambda: len(receiver.received) == 7)
    assert [r.json()["eventId"] for r in receiver.received[-2:]] == ["ev-0001", "ev-0003"]

    # The range holds what ns/hook delivered (not the dashboard event that only other/hook got).
    ranged = await rig.ops.redeliver("ns/hook", RedeliverRequest(since=t0 - 1, to="archive"), "erin")
    assert ranged.target == "ns/archive" and ranged.event_ids == ["ev-0001", "ev-0002", "ev-0003", "ev-0004"]
    await until(lambda: len([r for r in receiver.received if r.path == "/archive"]) == 4)
    assert [r.json()["eventId"] for r in receiver.received if r.path == "/archive"] == ranged.event_ids
    logged = await rig.store.attempts("ns/archive", AttemptQuery(outcome=AttemptOutcome.REDELIVERY_QUEUED))
    assert logged[0].note == "redelivery of 4 event(s) requested by erin from ns/hook"
    source = await rig.store.attempts("ns/hook", AttemptQuery(outcome=AttemptOutcome.REDELIVERY_QUEUED))
    assert source[-1].note == "redelivery of 4 event(s) to ns/archive requested by erin"
    assert rig.observer.reasons().count("RedeliveryQueued") == 3  # ids once, range on both webhooks

    for request, status in (
        (RedeliverRequest(since=time.time() + 60), 409),  # nothing in the range
        (RedeliverRequest(("gone",)), 409),
        (RedeliverRequest(("ev-0001",), to="missing"), 404),  # only webhooks of the same namespace
    ):
        with pytest.raises(OperationError) as info:
            await rig.ops.redeliver("ns/hook", request, "x")
        assert info.value.status == status


async def test_annotations_act_once_per_new_value_and_remember_status(rig: Rig, receiver: Receiver) -> None:
    await rig.dispatcher.register(target(receiver.url))
    who = lambda op: f"kubectl-annotate (annotation) for {op}"  # noqa: E731
    acted = await rig.annotations.annotations_changed("ns/hook", "uid-1", {A + "test": "1", "other": "x"}, handled=None,
                                              who=who)  # fmt: skip
    assert acted == ["test"] and rig.observer.handled["ns/hook"] == {"test": "1"}
    assert rig.observer.last_test["ns/hook"]["requestedBy"] == "kubectl-annotate (annotation) for test"
    again = await rig.annotations.annotations_changed("ns/hook", "uid-1", {A + "test": "1"}, handled=None, who=who)
    assert again == [] and len(receiver.received) == 1
    # After a restart the status seeds what was handled: nothing repeats, a new value acts.
    rig.annotations.forget("ns/hook")
    assert await rig.annotations.annotations_changed("ns/hook", "uid-1", {A + "test": "1"}, handled={"test": "1"},
                                             who=who) == []  # fmt: skip
    # A failing request is an Event, never an exception, and is not retried.
    acted = await rig.annotations.annotations_changed(
        "ns/hook", "uid-1", {A + "test": "1", A + "resume": "r", A + "redeliver": "since=whenever"}, handled=None,
        who=who,
    )  # fmt: skip
    assert acted == ["resume", "redeliver"]
    rejected = [e[3] for e in rig.observer.events if e[2] == "OperationRejected"]
    assert "nothing to resume" in rejected[0] and "invalid value" in rejected[1] and "since=whenever" in rejected[1]
    # A re-created Webhook (new uid) starts from its own status.
    assert await rig.annotations.annotations_changed("ns/hook", "uid-2", {A + "test": "1"}, handled=None, who=who) == [
        "test"
    ]
    assert len(receiver.received) == 2


# -- scope of redelivery (issue 13, finding 3 and the annotation part of 11) -------------------------------------


async def test_redeliver_by_id_of_another_webhooks_event_is_answered_as_an_unknown_id(
    rig: Rig, receiver: Receiver
) -> None:
    url = base(receiver)
    await rig.dispatcher.register(target(f"{url}/a", "team-a/hook"))
    await rig.dispatcher.register(target(f"{url}/b", "team-b/mine", entities=["dashboard"]))
    t0 = time.time()
    await rig.dispatcher.submit([event(1), event(2, "dashboard")])  # 1 routed to team-a only, 2 to team-b only
    await until(lambda: len(receiver.received) == 2)

    answers = []
    for asked in (("ev-0001",), ("never-accepted",)):
        with pytest.raises(OperationError) as info:
            await rig.ops.redeliver("team-b/mine", RedeliverRequest(asked), "mallory")
        answers.append((info.value.status, info.value.message))
    assert answers[0] == answers[1] and answers[0][0] == 409, answers  # no oracle: the same answer
    mixed = await rig.ops.redeliver("team-b/mine", RedeliverRequest(("ev-0001", "ev-0002", "never-accepted")), "m")
    assert (mixed.event_ids, mixed.missing) == (["ev-0002"], ["ev-0001", "never-accepted"])
    await until(lambda: len([r for r in receiver.received if r.path == "/b"]) == 2)
    # By time range too: only what team-b/mine itself was given.
    ranged = await rig.ops.redeliver("team-b/mine", RedeliverRequest(since=t0 - 1), "m")
    assert ranged.event_ids == ["ev-0002"]
    await until(lambda: len([r for r in receiver.received if r.path == "/b"]) == 3)
    await rig.dispatcher.idle()
    assert [r.json()["eventId"] for r in receiver.received if r.path == "/b"] == ["ev-0002"] * 3
    logged = await rig.store.attempts("team-b/mine", AttemptQuery())
    assert all("ev-0001" not in line.event_ids for line in logged)


async def test_redeliver_to_another_webhook_reapplies_its_filters(rig: Rig, receiver: Receiver) -> None:
    url = base(receiver)
    await rig.dispatcher.register(target(f"{url}/tables", "ns/tables"))
    await rig.dispatcher.register(target(f"{url}/dash", "ns/dash", entities=["dashboard"]))
    await rig.dispatcher.register(target(f"{url}/all", "ns/all", entities=["table", "dashboard"]))
    t0 = time.time()
    await rig.dispatcher.submit([event(1), event(2, "dashboard")])
    await until(lambda: len(receiver.received) == 4)

    with pytest.raises(OperationError) as info:  # nothing of it matches ns/dash's filters: nothing is queued
        await rig.ops.redeliver("ns/tables", RedeliverRequest(("ev-0001",), to="dash"), "x")
    assert info.value.status == 409 and "filters of ns/dash" in info.value.message
    assert await rig.store.attempts("ns/dash", AttemptQuery(outcome=AttemptOutcome.REDELIVERY_QUEUED)) == []
    some = await rig.ops.redeliver("ns/all", RedeliverRequest(("ev-0001", "ev-0002"), to="dash"), "x")
    assert (some.target, some.event_ids, some.filtered, some.missing) == ("ns/dash", ["ev-0002"], ["ev-0001"], [])
    ranged = await rig.ops.redeliver("ns/all", RedeliverRequest(since=t0 - 1, to="tables"), "x")
    assert (ranged.event_ids, ranged.filtered) == (["ev-0001"], ["ev-0002"])
    await rig.dispatcher.idle()
    assert [r.json()["eventId"] for r in receiver.received if r.path == "/dash"] == ["ev-0002", "ev-0002"]
    assert [r.json()["eventId"] for r in receiver.received if r.path == "/tables"] == ["ev-0001", "ev-0001"]


async def test_a_redeliver_annotation_may_not_name_another_webhook(rig: Rig, receiver: Receiver) -> None:
    """HTTP checks ``patch`` on the ``to`` Webhook; an annotation carries no user to check, so it may not name one."""
    url = base(receiver)
    await rig.dispatcher.register(target(f"{url}/hook", "ns/hook"))
    await rig.dispatcher.register(target(f"{url}/copy", "ns/copy"))
    await rig.dispatcher.submit([event(1)])
    await until(lambda: len(receiver.received) == 2)
    who = lambda op: "kubectl-annotate (annotation)"  # noqa: E731
    acted = await rig.annotations.annotations_changed("ns/hook", "uid-1", {A + "redeliver": "ids=ev-0001,to=copy"},
                                                      handled=None, who=who)  # fmt: skip
    assert acted == ["redeliver"]
    [(key, kind, _reason, message)] = [e for e in rig.observer.events if e[2] == "OperationRejected"]
    assert (key, kind) == ("ns/hook", "Warning") and "to=copy" in message and "kubectl webhook redeliver" in message
    # Naming itself is no other Webhook: that still works.
    await rig.annotations.annotations_changed("ns/hook", "uid-1", {A + "redeliver": "ids=ev-0001,to=hook"},
                                              handled=None, who=who)  # fmt: skip
    await rig.dispatcher.idle()
    assert [r.path for r in receiver.received].count("/copy") == 1
    assert [r.path for r in receiver.received].count("/hook") == 2
