"""Test doubles for the delivery core's unit tests: a hand-driven clock, a sender that never touches a socket, the
engine on one SQLite file around it (restartable), and a queue entry made from an event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from webhook_operator.api.encoding import compact_json
from webhook_operator.api.events import ChangeEvent
from webhook_operator.delivery.dispatcher import Dispatcher
from webhook_operator.delivery.sender import Outcome, OutcomeKind, Request
from webhook_operator.graph import Graph, build_graph
from webhook_operator.store.base import QueuedEvent
from webhook_operator.store.sqlite import SqliteStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def advance(clock: Clock, dispatcher: Dispatcher, seconds: float) -> None:
    """Move the clock on, wake every registered lane (a retry may be due now) and wait until the engine settles."""
    clock.now += seconds
    for key in dispatcher.keys():  # noqa: SIM118 (a Dispatcher, not a dict)
        dispatcher.worker(key).kick()
    await dispatcher.settled(within=5)


class ScriptedSender:
    """Answers from ``script`` (then ``default``); a request to a URL in ``gates`` waits for that gate, and the
    ``gate_call``-th request (1-based) waits for ``call_gate``; ``on_send`` is called with each request's number.
    Records every request. Never touches a socket."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: list[Outcome] = []
        self.default = Outcome(OutcomeKind.SUCCESS, 200, 1.0)
        self.gates: dict[str, asyncio.Event] = {}
        self.gate_call: int | None = None
        self.call_gate = asyncio.Event()
        self.on_send: Callable[[int], None] | None = None

    async def send(self, request: Request) -> Outcome:
        self.requests.append(request)
        n = len(self.requests)
        if self.on_send is not None:
            self.on_send(n)
        if request.url in self.gates:
            await self.gates[request.url].wait()
        if self.gate_call == n:
            await self.call_gate.wait()
        return self.script.pop(0) if self.script else self.default

    async def close(self) -> None:
        return None

    def urls(self) -> list[str]:
        return [r.url for r in self.requests]

    def batches(self) -> list[list[str]]:
        """The event ids of each request, in order (Generic payloads, single or list shape)."""
        out = []
        for r in self.requests:
            body = json.loads(r.body)
            out.append([e["id"] for e in body["data"]] if "data" in body else [body["id"]])
        return out


class SqliteEngine:
    """The composition root on one SQLite file with a ``ScriptedSender``; ``start`` again on the same path is a
    restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sender = ScriptedSender()

    async def start(self) -> Graph:
        self.graph: Graph = build_graph(store=SqliteStore(self.path), sender=self.sender)
        await self.graph.open()
        return self.graph


def queued(seq: int, event: ChangeEvent) -> QueuedEvent:
    """The queue entry of ``event`` stored as ``seq`` (its qid the same number)."""
    return QueuedEvent(qid=seq, seq=seq, event_id=event.id, body=compact_json(event.wire()), received_at=0.0)
