"""Related webhooks (issue 14): ``spec.fallback`` takes over a stalled webhook's events, in order, and hands back;
``spec.triggers`` turns delivery-state transitions into events for another webhook. In-memory (and SQLite) store, a
sender that answers per endpoint, a hand-driven clock: every step visible, no sleeps."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.related import TriggerOn
from webhook_operator.api.webhook import WebhookSpec, WebhookState, WebhookStatus, WebhookType
from webhook_operator.delivery.related import RelatedGraph, delivery_state, find_cycles, transition, trigger_event
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.delivery.sender import Outcome, OutcomeKind, Request
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.formats.base import RenderContext
from webhook_operator.formats.registry import formatter_for
from webhook_operator.graph import Graph, NullStatus, build_graph
from webhook_operator.status.summary import summarize
from webhook_operator.store.base import AttemptOutcome, AttemptQuery, RetryState, Store
from webhook_operator.store.memory import MemoryStore
from webhook_operator.store.sqlite import SqliteStore

from .fakes import Clock, advance

POLICY = RetryPolicy((10.0, 20.0))  # three attempts, then retryLimitReached
OK = Outcome(OutcomeKind.SUCCESS, 200, 1.0)
DOWN = Outcome(OutcomeKind.RETRYABLE, 503, 1.0, "HTTP 503")
REFUSED = Outcome(OutcomeKind.PERMANENT, None, 1.0, "address refused")
A, B, C, T = "ns/a", "ns/b", "ns/c", "ns/t"


class EndpointSender:
    """Answers per endpoint host (``a``, ``b``, …): ``down`` hosts fail as told, every other one answers 200."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.down: dict[str, Outcome] = {}

    async def send(self, request: Request) -> Outcome:
        self.requests.append(request)
        return self.down.get(_host(request.url), OK)

    async def close(self) -> None:
        return None

    def ids(self, host: str, *, ok_only: bool = False) -> list[list[str]]:
        """Event ids per request to ``host`` (Generic bodies)."""
        out = []
        for r in self.requests:
            if _host(r.url) == host and not (ok_only and host in self.down):
                body = json.loads(r.body)
                out.append([e["id"] for e in body["data"]] if "data" in body else [body["id"]])
        return out

    def bodies(self, host: str) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests if _host(r.url) == host]


def _host(url: str) -> str:
    return url.split("//", 1)[1].split(".", 1)[0]


class Recorder(NullStatus):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def record_event(self, key: str, type: str, reason: str, message: str) -> None:
        self.events.append((key, reason, message))

    def reasons(self, key: str) -> list[str]:
        return [reason for k, reason, _ in self.events if k == key]


def event(i: int, event_type: str = "entityCreated") -> ChangeEvent:
    return ChangeEvent.model_validate({
        "id": f"ev-{i:03d}", "eventType": event_type, "entityType": "table", "entityId": f"e-{i}",
        "timestamp": 1_700_000_000_000 + i, "entity": {"id": f"e-{i}", "name": f"t{i}"},
    })  # fmt: skip


def target(key: str, *, batch: int = 1, kind: str = "Generic", event_type: str = "",
           **related: Any) -> WebhookTarget:  # fmt: skip
    name = key.partition("/")[2]
    # a subscribes to entityCreated; the others, unless told, to something no test sends.
    event_type = event_type or ("entityCreated" if name in {"a", "pd"} else "entitySoftDeleted")
    spec = WebhookSpec.model_validate({
        "webhookType": kind, "batchSize": batch, "eventFilters": [{"eventType": event_type}],
        "webhookConfig": {"endpoint": f"http://{name}.receiver.test/hook?token=abc"}, **related,
    })  # fmt: skip
    return WebhookTarget(key=key, spec=spec)


def fallback(name: str) -> dict[str, Any]:
    return {"fallback": {"name": name}}


#: A target of a fallback or trigger must opt in (spec.acceptFrom); these tests' targets accept any webhook.
ACCEPT: dict[str, Any] = {"acceptFrom": ["*"]}


class Rig:
    def __init__(self, store: Store | None = None, sender: EndpointSender | None = None) -> None:
        self.clock = Clock()
        self.store = store or MemoryStore(clock=self.clock)
        self.sender = sender or EndpointSender()
        self.status = Recorder()
        self.graph: Graph = build_graph(store=self.store, sender=self.sender, status=self.status, clock=self.clock,
                                        retry=POLICY)  # fmt: skip
        self.d = self.graph.dispatcher

    async def settle(self) -> None:
        await self.d.settled(within=5)

    async def advance(self, seconds: float) -> None:
        await advance(self.clock, self.d, seconds)

    async def exhaust(self) -> None:
        """The retry schedule runs out (attempts at +0, +10, +30)."""
        await self.settle()
        await self.advance(10.0)
        await self.advance(20.0)

    async def register(self, *targets: WebhookTarget) -> None:
        for t in targets:
            await self.d.register(t)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    await r.graph.open()
    yield r
    await r.graph.close()


# -- the rules -----------------------------------------------------------------------------------------------


def test_cycles_are_found_with_their_path() -> None:
    assert find_cycles({"a": ["a"]}) == {"a": ["a", "a"]}
    assert find_cycles({"a": ["b"], "b": ["a"]}) == {"a": ["a", "b", "a"], "b": ["b", "a", "b"]}
    assert find_cycles({"a": ["b"], "b": ["c"], "c": ["a"]})["a"] == ["a", "b", "c", "a"]
    assert find_cycles({"x": ["b"], "b": ["c"], "c": ["b"]}).keys() == {"b", "c"}, "x only leads into one"
    assert find_cycles({"a": ["b"], "b": ["c"]}) == {}


def _spec(**related: Any) -> WebhookSpec:
    return target("ns/x", **{**ACCEPT, **related}).spec


def test_a_fallback_cycle_is_refused_for_its_members_only_and_named() -> None:
    graph = RelatedGraph()
    assert graph.update(A, _spec(**fallback("b"))) == set()
    assert graph.fallback(A) is None, "b is not registered: nothing accepts a's events yet"
    assert graph.update(B, _spec()) == set()
    assert graph.fallback(A) == B
    assert graph.update(B, _spec(**fallback("c"))) == set()
    assert graph.update(C, _spec(**fallback("b"))) == {B, C}  # b → c → b closes
    assert graph.fallback(A) == B and graph.fallback(B) is None and graph.fallback(C) is None
    assert graph.warnings(B) == ("spec.fallback refused: fallback cycle ns/b → ns/c → ns/b (no fallback is used "
                                 "until the cycle is broken)",)  # fmt: skip
    assert graph.update(C, _spec()) == {B, C} and graph.fallback(B) == C and graph.warnings(B) == ()
    graph.update(A, _spec(**fallback("a")))
    assert graph.fallback(A) is None and "ns/a → ns/a" in graph.warnings(A)[0]
    assert graph.sources(C) == [B]


def test_trigger_cycles_are_refused_edge_by_edge() -> None:
    graph = RelatedGraph()
    graph.update(A, _spec(triggers=[{"name": "b"}, {"name": "t", "on": ["failing"]}]))
    graph.update(B, _spec(triggers=[{"name": "a"}]))
    graph.update(T, _spec())
    assert graph.triggers(A, TriggerOn.FAILING) == [T], "a → b lies on the cycle a → b → a; a → t does not"
    assert graph.triggers(A, TriggerOn.RECOVERED) == [] and graph.triggers(B, TriggerOn.FAILING) == []
    assert graph.warnings(A) == ("spec.triggers b refused: trigger cycle ns/a → ns/b → ns/a",)


def test_transitions_are_the_delivery_state_changes_that_matter() -> None:
    active, waiting, limit, failed = (WebhookState.ACTIVE, WebhookState.AWAITING_RETRY,
                                      WebhookState.RETRY_LIMIT_REACHED, WebhookState.FAILED)  # fmt: skip
    assert transition(active, waiting) is TriggerOn.FAILING and transition(active, failed) is TriggerOn.FAILING
    assert transition(waiting, limit) is TriggerOn.RETRY_LIMIT_REACHED
    assert transition(limit, active) is TriggerOn.RECOVERED and transition(failed, active) is TriggerOn.RECOVERED
    assert transition(limit, waiting) is None and transition(waiting, failed) is None
    assert transition(waiting, waiting) is None
    assert delivery_state(RetryState(held_qids=(1,), paused="retryLimitReached")) is limit


# -- fallback ------------------------------------------------------------------------------------------------


async def test_fallback_takes_over_on_retry_limit_held_batch_first_in_order_nothing_twice(rig: Rig) -> None:
    rig.sender.down["a"] = DOWN
    # b subscribes to something else entirely: its filters are not re-applied to a's events.
    await rig.register(target(A, batch=2, **fallback("b")), target(B, **ACCEPT, batch=3))
    await rig.d.submit([event(i) for i in range(1, 6)])
    await rig.exhaust()
    assert rig.sender.ids("a") == [["ev-001", "ev-002"]] * 3
    assert rig.sender.ids("b") == [["ev-001", "ev-002", "ev-003"], ["ev-004", "ev-005"]]
    snap = rig.d.snapshot(A)
    assert snap is not None and snap.state is WebhookState.RETRY_LIMIT_REACHED and snap.fallback_to == B
    assert snap.pending == 0 and "its events go to fallback ns/b" in snap.message
    status = summarize(snap, generation=1, now=rig.clock.now)
    assert status["fallbackActive"] is True and "events go to ns/b" in status["fallbackReason"]
    WebhookStatus.model_validate(status)  # the CRD's status schema is generated from it
    assert "FallbackActivated" in rig.status.reasons(A) and "FallbackTakingOver" in rig.status.reasons(B)
    # New events routed to a go to b while the fallback is active (and an event both match goes once).
    await rig.d.submit([event(6), event(7, "entitySoftDeleted")])
    await rig.settle()
    assert rig.sender.ids("b")[2:] == [["ev-006", "ev-007"]] and len(rig.sender.ids("a")) == 3
    delivered = [i for batch in rig.sender.ids("b") for i in batch]
    assert delivered == [f"ev-{i:03d}" for i in range(1, 8)], "each exactly once, in order"
    log = await rig.store.attempts(A, AttemptQuery(outcome=AttemptOutcome.SKIPPED))
    assert [(r.event_ids, r.note) for r in log] == [
        (["ev-001", "ev-002", "ev-003", "ev-004", "ev-005"], "handed to fallback ns/b")]  # fmt: skip
    assert [e.event_id for e in await rig.store.routed_events(B, ["ev-001"])] == ["ev-001"]


async def test_fallback_takes_over_on_a_permanent_failure(rig: Rig) -> None:
    rig.sender.down["a"] = REFUSED
    await rig.register(target(A, **fallback("b")), target(B, **ACCEPT))
    await rig.d.submit([event(1), event(2)])
    await rig.settle()
    snap = rig.d.snapshot(A)
    assert snap is not None and snap.state is WebhookState.FAILED and snap.fallback_to == B
    assert rig.sender.ids("a") == [["ev-001"]] and rig.sender.ids("b") == [["ev-001"], ["ev-002"]]


async def test_resume_hands_back_to_the_own_endpoint(rig: Rig) -> None:
    rig.sender.down["a"] = DOWN
    await rig.register(target(A, **fallback("b")), target(B, **ACCEPT))
    await rig.d.submit([event(1)])
    await rig.exhaust()
    del rig.sender.down["a"]
    assert "resumed" in await rig.graph.operations.resume(A, "dana")
    await rig.d.submit([event(2)])
    await rig.settle()
    snap = rig.d.snapshot(A)
    assert snap is not None and snap.fallback_to is None and snap.state is WebhookState.ACTIVE
    assert rig.sender.ids("a", ok_only=True)[-1] == ["ev-002"] and rig.sender.ids("b") == [["ev-001"]]
    assert "FallbackEnded" in rig.status.reasons(A)
    assert (await rig.store.lane_state(A)).retry.fallback is None


async def test_a_successful_test_hands_back_a_failed_one_does_not(rig: Rig) -> None:
    rig.sender.down["a"] = DOWN
    await rig.register(target(A, **fallback("b")), target(B, **ACCEPT))
    await rig.d.submit([event(1)])
    await rig.exhaust()
    assert not (await rig.graph.operations.test(A, "erin")).ok
    assert rig.d.snapshot(A).fallback_to == B  # type: ignore[union-attr]
    del rig.sender.down["a"]
    assert (await rig.graph.operations.test(A, "erin")).ok
    await rig.d.submit([event(2)])
    await rig.settle()
    assert rig.d.snapshot(A).fallback_to is None  # type: ignore[union-attr]
    assert rig.sender.ids("a")[-1] == ["ev-002"] and rig.sender.ids("b") == [["ev-001"]]
    lines = await rig.store.attempts(A, AttemptQuery(outcome=AttemptOutcome.RESUMED))
    assert lines[-1].note == "fallback ns/b ended: a test delivery by erin succeeded"


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_an_active_fallback_survives_a_restart(backend: str, tmp_path: Path) -> None:
    def make() -> Store:
        return MemoryStore() if backend == "memory" else SqliteStore(tmp_path / "store.db")

    first = Rig(make())
    first.sender.down["a"] = DOWN
    await first.graph.open()
    await first.register(target(A, **fallback("b")), target(B, **ACCEPT))
    await first.d.submit([event(1)])
    await first.exhaust()
    assert first.d.snapshot(A).fallback_to == B  # type: ignore[union-attr]
    await first.d.stop()
    await first.store.close()
    store = first.store if backend == "memory" else make()
    again = Rig(store, first.sender)  # a new process on the same data
    await again.graph.open()
    try:
        await again.register(target(A, **fallback("b")), target(B, **ACCEPT))
        snap = again.d.snapshot(A)
        assert snap is not None and snap.fallback_to == B and snap.state is WebhookState.RETRY_LIMIT_REACHED
        await again.d.submit([event(2)])
        await again.settle()
        assert again.sender.ids("b") == [["ev-001"], ["ev-002"]] and len(again.sender.ids("a")) == 3
    finally:
        await again.graph.close()


async def test_a_cycle_is_refused_and_the_events_stay(rig: Rig) -> None:
    rig.sender.down["a"] = DOWN
    await rig.register(target(A, **ACCEPT, **fallback("b")), target(B, **ACCEPT, **fallback("a")))
    await rig.d.submit([event(1)])
    await rig.exhaust()
    snap = rig.d.snapshot(A)
    assert snap is not None and snap.fallback_to is None and snap.pending == 1 and rig.sender.ids("b") == []
    assert snap.warnings == ("spec.fallback refused: fallback cycle ns/a → ns/b → ns/a (no fallback is used until "
                             "the cycle is broken)",)  # fmt: skip
    status = summarize(snap, generation=1, now=rig.clock.now)
    assert "Warning: spec.fallback refused: fallback cycle ns/a → ns/b → ns/a" in status["conditions"][0]["message"]
    assert status["fallbackActive"] is False
    assert "RelatedWebhookCycle" in rig.status.reasons(A)


async def test_an_absent_fallback_keeps_the_events_until_it_appears(rig: Rig) -> None:
    rig.sender.down["a"] = DOWN
    await rig.register(target(A, **fallback("b")))
    await rig.d.submit([event(1), event(2)])
    await rig.exhaust()
    assert rig.d.snapshot(A).pending == 2  # type: ignore[union-attr]
    await rig.register(target(B, **ACCEPT))
    await rig.settle()
    assert rig.sender.ids("b") == [["ev-001"], ["ev-002"]] and rig.d.snapshot(A).fallback_to == B  # type: ignore[union-attr]


async def test_chained_fallbacks_forward(rig: Rig) -> None:
    rig.sender.down["a"] = rig.sender.down["b"] = DOWN
    await rig.register(target(A, **fallback("b")), target(B, **ACCEPT, event_type="entityDeleted", **fallback("c")),
                       target(C, **ACCEPT))  # fmt: skip
    await rig.d.submit([event(1, "entityDeleted")])  # only b wants this one: b stalls and hands to c
    await rig.exhaust()
    await rig.d.submit([event(2)])  # a stalls; b's fallback is active, so a may hand to b, which forwards to c
    await rig.exhaust()
    assert rig.sender.ids("c") == [["ev-001"], ["ev-002"]]
    assert rig.d.snapshot(A).fallback_to == B and rig.d.snapshot(B).fallback_to == C  # type: ignore[union-attr]


# -- triggers ------------------------------------------------------------------------------------------------


async def test_triggers_emit_once_per_transition_to_the_target_only(rig: Rig) -> None:
    rig.sender.down["pd"] = DOWN
    pd = "ns/pd"
    slack = target(T, **ACCEPT, kind="Slack")  # its filters (entitySoftDeleted) are not applied to trigger events
    await rig.register(target(pd, triggers=[{"name": "t"}]), slack, target(B, **ACCEPT, event_type="entityCreated"))
    await rig.d.submit([event(1)])
    await rig.exhaust()  # three failed attempts: one failing, one retryLimitReached
    texts = [body["text"] for body in rig.sender.bodies("t")]
    assert texts == ["Webhook ns.pd is failing: HTTP 503", "Webhook ns.pd reached its retry limit (delivery paused): "
                     "HTTP 503"]  # fmt: skip
    del rig.sender.down["pd"]
    await rig.graph.operations.resume(pd, "dana")
    await rig.settle()
    assert [body["text"] for body in rig.sender.bodies("t")][2:] == ["Webhook ns.pd recovered (delivering again)"]
    assert rig.sender.ids("b") == [["ev-001"]], "b subscribes to entityCreated: it got the table event only"
    for body in rig.sender.bodies("t"):
        assert "abc" not in json.dumps(body) and "/hook" not in json.dumps(body), "never the endpoint's path/query"


async def test_trigger_event_carries_the_webhook_the_error_and_counts(rig: Rig) -> None:
    rig.sender.down["a"] = DOWN
    await rig.register(target(A, triggers=[{"name": "b", "on": ["failing"]}]), target(B, **ACCEPT))
    await rig.d.submit([event(1)])
    await rig.exhaust()
    [body] = rig.sender.bodies("b")
    assert body["eventType"] == "webhookDeliveryFailing" and body["entityType"] == "webhook"
    assert body["entityId"] == A and body["entityFullyQualifiedName"] == "ns.a"
    entity = body["entity"]
    assert entity["endpointHost"] == "a.receiver.test" and entity["error"] == "HTTP 503"
    assert entity["counts"] == {"delivered": 0, "failed": 1, "pending": 1} and entity["webhookType"] == "Generic"


async def test_a_trigger_cycle_never_loops(rig: Rig) -> None:
    rig.sender.down["a"] = rig.sender.down["b"] = DOWN
    await rig.register(target(A, **ACCEPT, triggers=[{"name": "b"}]), target(B, **ACCEPT, event_type="entityDeleted",
                                                                     triggers=[{"name": "a"}]))  # fmt: skip
    await rig.d.submit([event(1)])
    await rig.exhaust()
    assert all(body.get("entityType") != "webhook" for body in rig.sender.bodies("b"))
    assert "RelatedWebhookCycle" in rig.status.reasons(A) and "RelatedWebhookCycle" in rig.status.reasons(B)


@pytest.mark.parametrize("kind", [WebhookType.SLACK, WebhookType.MSTEAMS, WebhookType.GOOGLE_CHAT])
def test_every_chat_format_reads_a_trigger_event_as_a_sentence(kind: WebhookType) -> None:
    failing = RetryState(held_qids=(1,), attempts=2, last_reason="HTTP 503", last_status_code=503)
    pd = target("team-a/pagerduty")
    for transition_, retry, phrase in (
        (TriggerOn.FAILING, failing, "Webhook team-a.pagerduty is failing: HTTP 503"),
        (TriggerOn.RETRY_LIMIT_REACHED, failing, "Webhook team-a.pagerduty reached its retry limit (delivery paused)"),
        (TriggerOn.RECOVERED, RetryState(last_reason="HTTP 503"), "Webhook team-a.pagerduty recovered"),
    ):
        ev_ = trigger_event(pd, transition_, retry, state=WebhookState.ACTIVE, delivered=1, failed=2, pending=0, now=0)
        body = formatter_for(kind).render([ev_], RenderContext("ops", kind)).body.decode()
        assert phrase in body, (kind, body)
        assert "token" not in body and "/hook" not in body
