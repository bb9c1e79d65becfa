"""Several operator replicas over one in-memory store, driven by one hand-held clock.

A ``MemoryStore`` has one fence; ``ReplicaStore`` gives each replica its own by setting it on the shared store
right before each call (the memory store checks it before its first ``await``, so no other replica's call can run
in between). Its ``enqueue`` tells the other replicas which queues changed, as PostgreSQL's notifications do.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.outcomes import WebhookSnapshot
from webhook_operator.api.webhook import WebhookSpec
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.delivery.sender import Outcome, OutcomeKind, Request
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.graph import Graph, NullStatus, build_graph
from webhook_operator.sharing.claim import StatusClaim
from webhook_operator.sharing.manager import LeaseManager
from webhook_operator.store.base import EnqueueResult, Fence
from webhook_operator.store.memory import MemoryStore

from ..delivery.fakes import Clock

LEASE = 9.0  # ticks every 3 s
POLICY = RetryPolicy((5.0, 5.0, 5.0))
OK = Outcome(OutcomeKind.SUCCESS, 200, 1.0)
DOWN = Outcome(OutcomeKind.RETRYABLE, 503, 1.0, error="HTTP 503")


class Sender:
    """Records (replica, webhook endpoint, event ids) per request; endpoints in ``down`` answer 503; a request to an
    endpoint in ``gates`` waits for its gate."""

    def __init__(self, log: list[tuple[str, str, list[str]]], replica: str) -> None:
        self.log, self.replica = log, replica
        self.down: set[str] = set()
        self.gates: dict[str, asyncio.Event] = {}
        self.started: set[str] = set()

    async def send(self, request: Request) -> Outcome:
        body = json.loads(request.body)
        ids = [e["id"] for e in body["data"]] if "data" in body else [body["id"]]
        self.log.append((self.replica, request.url, ids))
        self.started.add(request.url)
        gate = self.gates.get(request.url)
        if gate is not None:
            await gate.wait()
        return DOWN if request.url in self.down else OK

    async def close(self) -> None:
        return None


class Status(NullStatus):
    def __init__(self) -> None:
        self.snapshots: list[WebhookSnapshot] = []

    def webhook_changed(self, snapshot: WebhookSnapshot) -> None:
        self.snapshots.append(snapshot)


class ReplicaStore:
    """One replica's view of the shared store (see the module docstring)."""

    def __init__(self, store: MemoryStore, peers: list[ReplicaStore]) -> None:
        self._store, self._peers = store, peers
        self._fence: Fence | None = None
        self.watchers: list[Callable[[Sequence[str] | None], None]] = []
        self.notifications: list[tuple[Callable[[Sequence[str] | None], None], list[str]]] = []
        self.lagging = False
        peers.append(self)

    def set_fence(self, fence: Fence | None) -> None:
        self._fence = fence

    async def watch_queues(self, callback: Callable[[Sequence[str] | None], None]) -> None:
        self.watchers.append(callback)

    async def enqueue(self, *args: Any, **kwargs: Any) -> EnqueueResult:
        self._store.set_fence(self._fence)
        result = await self._store.enqueue(*args, **kwargs)
        for peer in self._peers:
            if peer is not self:
                for watcher in peer.watchers:
                    peer.notifications.append((watcher, list(result.queued)))
                if not peer.lagging:
                    peer.notify()
        return result

    def notify(self) -> None:
        """Deliver the queue notifications held back (``lagging``: PostgreSQL's arrive a little later)."""
        held, self.notifications = self.notifications, []
        for watcher, keys in held:
            watcher(keys)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def fenced(*args: Any, **kwargs: Any) -> Any:
            self._store.set_fence(self._fence)
            return await attr(*args, **kwargs)

        return fenced


def endpoint(key: str) -> str:
    return f"http://{key.replace('/', '-')}.receiver.test/hook"


def target(key: str, batch: int = 1, **delivery: Any) -> WebhookTarget:
    spec = WebhookSpec.model_validate({
        "webhookType": "Generic", "batchSize": batch, "eventFilters": [{"eventType": "entityCreated"}],
        "webhookConfig": {"endpoint": endpoint(key)}, **({"delivery": delivery} if delivery else {}),
    })  # fmt: skip
    return WebhookTarget(key=key, spec=spec)


def event(i: int, entity: str = "") -> ChangeEvent:
    return ChangeEvent.model_validate({
        "id": f"ev-{i:05d}", "eventType": "entityCreated", "entityType": "table", "entityId": entity or f"e-{i}",
        "timestamp": 1_700_000_000_000 + i, "entity": {"id": f"e-{i}", "name": f"t{i}"},
    })  # fmt: skip


class Replica:
    def __init__(self, name: str, store: MemoryStore, peers: list[ReplicaStore], clock: Clock,
                 log: list[tuple[str, str, list[str]]]) -> None:  # fmt: skip
        self.name = name
        self.view = ReplicaStore(store, peers)
        self.sender = Sender(log, name)
        self.status = Status()
        self.graph: Graph = build_graph(store=self.view, sender=self.sender, status=self.status,  # type: ignore[arg-type]
                                        clock=clock, retry=POLICY, shared=True)  # fmt: skip
        self.dispatcher = self.graph.dispatcher
        self.manager = LeaseManager(self.view, self.dispatcher, replica=name, lease_duration=LEASE,  # type: ignore[arg-type]
                                    clock=clock, address=f"{name}.test:8080")  # fmt: skip
        self.claim = StatusClaim(self.view, self.manager)  # type: ignore[arg-type]
        self.alive = True

    async def start(self) -> None:
        await self.graph.open()
        await self.manager.start(ticking=False)

    def owned(self) -> set[str]:
        return set(self.dispatcher.owned())


class Cluster:
    def __init__(self, names: Sequence[str]) -> None:
        self.clock = Clock()
        self.store = MemoryStore(clock=self.clock)
        self.peers: list[ReplicaStore] = []
        self.log: list[tuple[str, str, list[str]]] = []
        self.replicas = {name: Replica(name, self.store, self.peers, self.clock, self.log) for name in names}

    def __getitem__(self, name: str) -> Replica:
        return self.replicas[name]

    async def start(self, *names: str) -> None:
        for name in names or self.replicas:
            await self.replicas[name].start()

    def add(self, name: str) -> Replica:
        self.replicas[name] = Replica(name, self.store, self.peers, self.clock, self.log)
        return self.replicas[name]

    async def register(self, *keys: str, **delivery: Any) -> None:
        for replica in self.replicas.values():
            for key in keys:
                await replica.dispatcher.register(target(key, **delivery))

    async def tick(self, *names: str) -> None:
        """One renewal round of the replicas still alive (or the named ones)."""
        for name in names or [n for n, r in self.replicas.items() if r.alive]:
            await self.replicas[name].manager.tick()
            await self.replicas[name].manager.settled()  # its adoptions and hand-overs, which run beside ticks

    async def advance(self, seconds: float, step: float = LEASE / 3) -> None:
        """Let time pass, the live replicas ticking every ``step`` as their loops would."""
        left = seconds
        while left > 1e-9:
            dt = min(step, left)
            self.clock.now += dt
            left -= dt
            await self.tick()
            await self.settle()

    async def settle(self) -> None:
        for _ in range(3):
            for replica in self.replicas.values():
                if replica.alive:
                    await replica.dispatcher.settled(within=5)
            await asyncio.sleep(0)

    def owners(self) -> dict[str, set[str]]:
        return {name: r.owned() for name, r in self.replicas.items()}

    def delivered(self, key: str) -> list[str]:
        """Event ids sent to ``key``'s endpoint, in order, by any replica (failed attempts included)."""
        return [i for _, url, ids in self.log if url == endpoint(key) for i in ids]

    def senders(self, key: str) -> set[str]:
        return {replica for replica, url, _ in self.log if url == endpoint(key)}

    async def close(self) -> None:
        for replica in self.replicas.values():
            await replica.manager.stop()
            await replica.dispatcher.stop()
