"""Related webhooks (issue 14) in a shared namespace: the target of a fallback or trigger must opt in
(``acceptFrom``), a receiver's error text cannot speak through a trigger event, and a loop through a trigger and a
fallback is refused. Each test replays an attack from the adversarial review against the real dispatcher."""

from __future__ import annotations

import json
from typing import Any

import pytest

from webhook_operator.api.operations import RedeliverRequest
from webhook_operator.api.related import TriggerOn
from webhook_operator.api.webhook import WebhookSpec, WebhookState, WebhookType
from webhook_operator.delivery.related import MAX_ERROR, RelatedGraph, trigger_event
from webhook_operator.delivery.sender import Outcome, Request
from webhook_operator.formats.base import RenderContext
from webhook_operator.formats.registry import formatter_for
from webhook_operator.status.summary import summarize
from webhook_operator.store.base import RetryState

from .test_related import ACCEPT, DOWN, OK, REFUSED, EndpointSender, Rig, _host, event, fallback, rig, target  # noqa: F401

A, B, C = "ns/a", "ns/b", "ns/c"
NOT_ACCEPTED = "ns/b does not accept fallback or trigger events from a: add a to ns/b's spec.acceptFrom"


def _spec(**related: Any) -> WebhookSpec:
    return target("ns/x", **{**ACCEPT, **related}).spec


# -- A: the target opts in ---------------------------------------------------------------------------------------


def test_acceptance_is_by_name_or_star_within_the_namespace() -> None:
    graph = RelatedGraph()
    graph.update(A, _spec(**fallback("b"), triggers=[{"name": "c"}]))
    graph.update(B, _spec(acceptFrom=None))
    graph.update(C, _spec(acceptFrom=["other"]))
    assert graph.fallback(A) is None and graph.triggers(A, TriggerOn.FAILING) == []
    assert graph.warnings(A) == (NOT_ACCEPTED, "ns/c does not accept fallback or trigger events from a: add a to "
                                 "ns/c's spec.acceptFrom")  # fmt: skip
    assert graph.event_reason(A) == "RelatedWebhookNotAccepted"
    assert graph.update(B, _spec(acceptFrom=["a"])) == {A}
    assert graph.update(C, _spec(acceptFrom=["*"])) == {A}
    assert graph.fallback(A) == B and graph.triggers(A, TriggerOn.FAILING) == [C] and graph.warnings(A) == ()
    assert not graph.accepts("other/b", A), "never across namespaces"


async def test_a_fallback_the_target_does_not_accept_moves_nothing_and_says_so(rig: Rig) -> None:  # noqa: F811
    rig.sender.down["a"] = REFUSED  # permanent failure: the fallback would take over at once
    await rig.register(target(A, **fallback("b")), target(B))  # b does not opt in
    await rig.d.submit([event(i) for i in range(1, 4)])
    await rig.settle()
    for _ in range(3):  # redelivering a's own events must not push them into b either
        await rig.graph.operations.redeliver(A, RedeliverRequest(event_ids=("ev-001", "ev-002")), "tenant-a")
        await rig.settle()
    assert rig.sender.ids("b") == []
    snap = rig.d.snapshot(A)
    assert snap is not None and snap.fallback_to is None and snap.warnings == (NOT_ACCEPTED,)
    status = summarize(snap, generation=1, now=rig.clock.now)
    assert NOT_ACCEPTED in status["conditions"][0]["message"]
    assert "RelatedWebhookNotAccepted" in rig.status.reasons(A)
    await rig.register(target(B, acceptFrom=["a"]))  # b opts in: a's held events go now
    await rig.settle()
    assert [ids[0] for ids in rig.sender.ids("b")][:1] == ["ev-001"] and rig.d.snapshot(A).fallback_to == B  # type: ignore[union-attr]


async def test_withdrawing_acceptance_ends_an_active_fallback(rig: Rig) -> None:  # noqa: F811
    rig.sender.down["a"] = REFUSED
    await rig.register(target(A, **fallback("b")), target(B, acceptFrom=["a"]))
    await rig.d.submit([event(1)])
    await rig.settle()
    assert rig.sender.ids("b") == [["ev-001"]] and rig.d.snapshot(A).fallback_to == B  # type: ignore[union-attr]
    await rig.register(target(B, acceptFrom=[]))
    await rig.settle()
    await rig.d.submit([event(2)])
    await rig.settle()
    await rig.graph.operations.redeliver(A, RedeliverRequest(event_ids=("ev-001",)), "tenant-a")
    await rig.settle()
    assert rig.sender.ids("b") == [["ev-001"]], "events already handed over stay; nothing new goes to b"
    assert rig.d.snapshot(A).fallback_to is None and "FallbackEnded" in rig.status.reasons(A)  # type: ignore[union-attr]


async def test_a_trigger_the_target_does_not_accept_sends_nothing(rig: Rig) -> None:  # noqa: F811
    rig.sender.down["a"] = DOWN
    await rig.register(target(A, triggers=[{"name": "b"}]), target(B, kind="Slack", acceptFrom=["c"]))
    await rig.d.submit([event(1)])
    await rig.exhaust()
    assert rig.sender.bodies("b") == [] and rig.d.snapshot(A).warnings == (NOT_ACCEPTED,)  # type: ignore[union-attr]


# -- B: receiver-controlled text -----------------------------------------------------------------------------------

EVIL = "HTTP 503 <!channel> URGENT [log in](https://evil.example/login) <at>ops</at> " + "x" * 2000


def test_trigger_error_text_is_bounded() -> None:
    failing = RetryState(held_qids=(1,), attempts=1, last_reason=EVIL, last_status_code=503)
    ev = trigger_event(target(A), TriggerOn.FAILING, failing, state=WebhookState.AWAITING_RETRY, delivered=0,
                       failed=1, pending=1, now=0)  # fmt: skip
    error = (ev.entity or {})["error"]
    assert MAX_ERROR == 200 and len(error) <= MAX_ERROR and error.startswith("HTTP 503 <!channel>")


def _texts(node: Any) -> list[str]:
    """Every string a chat client reads as markup: Slack mrkdwn fields and the message text, Teams TextBlocks."""
    if isinstance(node, dict):
        if node.get("type") == "plain_text":
            return []  # Slack plain_text is never parsed: no mentions, no links
        return [v for k, v in node.items() if k == "text" and isinstance(v, str)] + [
            s for k, v in node.items() if k != "text" or not isinstance(v, str) for s in _texts(v)
        ]
    if isinstance(node, list):
        return [s for item in node for s in _texts(item)]
    return []


@pytest.mark.parametrize("kind", [WebhookType.SLACK, WebhookType.MSTEAMS, WebhookType.GOOGLE_CHAT])
def test_a_receivers_error_text_cannot_ping_or_link_in_chat(kind: WebhookType) -> None:
    failing = RetryState(held_qids=(1,), attempts=1, last_reason=EVIL, last_status_code=503)
    ev = trigger_event(target(A), TriggerOn.FAILING, failing, state=WebhookState.AWAITING_RETRY, delivered=0,
                       failed=1, pending=1, now=0)  # fmt: skip
    body = json.loads(formatter_for(kind).render([ev], RenderContext("ops", kind)).body)
    texts = _texts(body)
    assert texts and any("URGENT" in t for t in texts)
    for text in texts:
        assert "<!channel>" not in text and "<at>" not in text, (kind, text)
        assert "](https://evil" not in text, "no markdown link of the receiver's making"
        assert 'href="https://evil' not in text
    assert "x" * (MAX_ERROR + 1) not in json.dumps(body)


# -- C: a loop through a trigger and a fallback ---------------------------------------------------------------------


def test_a_cycle_through_a_trigger_and_a_fallback_is_refused() -> None:
    graph = RelatedGraph()
    graph.update(A, _spec(triggers=[{"name": "b"}]))
    graph.update(B, _spec(**fallback("a")))
    assert graph.triggers(A, TriggerOn.FAILING) == [] and graph.fallback(B) is None
    assert graph.warnings(A) == ("spec.triggers b refused: cycle through fallback and triggers ns/a → ns/b → ns/a",)
    assert graph.warnings(B) == ("spec.fallback refused: cycle through fallback and triggers ns/b → ns/a → ns/b (no "
                                 "fallback is used until the cycle is broken)",)  # fmt: skip
    assert graph.event_reason(A) == "RelatedWebhookCycle"


class Flapping(EndpointSender):
    """b refuses everything (its fallback would be active); a alternates failure and success."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    async def send(self, request: Request) -> Outcome:
        self.requests.append(request)
        if _host(request.url) == "b":
            return REFUSED
        self.n += 1
        return DOWN if self.n % 2 else OK


async def test_a_trigger_and_fallback_loop_makes_no_events_of_its_own() -> None:
    flap = Rig(sender=Flapping())
    await flap.graph.open()
    try:
        await flap.register(target(A, **ACCEPT, triggers=[{"name": "b"}]), target(B, **ACCEPT, **fallback("a")))
        await flap.d.submit([event(1)])
        await flap.settle()
        for _ in range(12):
            await flap.advance(10.0)
        trigger_events = [b for b in flap.sender.bodies("a") if str(b.get("eventType", "")).startswith("webhook")]
        assert trigger_events == [] and len(flap.sender.bodies("a")) <= 2, "one event: one failure, one retry"
        assert "RelatedWebhookCycle" in flap.status.reasons(A) and "RelatedWebhookCycle" in flap.status.reasons(B)
    finally:
        await flap.graph.close()
