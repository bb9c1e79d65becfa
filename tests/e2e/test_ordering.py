"""spec.delivery.ordering end to end (issue 12, part 2): the real operator on the real control plane, a real receiver
on loopback that fails one entity's requests, counts requests in flight and connections, and a SIGKILL mid-stream.

The receiver here reads each request's body (the entity it carries), which ``support.receiver`` does not."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from support.cluster import Cluster, wait_for
from support.events import raw
from support.operator import OperatorProcess, wait_status
from support.receiver import serve_loopback
from support.webhooks import manifest, single_spec

#: Long enough that a held entity is still held while the others drain, short enough to retry within a test.
SCHEDULE = "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s"


_SERIES: dict[str, int] = {}


def entity_event(entity: str, n: int) -> dict[str, Any]:
    """Sample 01 (a table created) as an event of ``entity``, numbered ``n`` within it (ids unique per entity)."""
    data = copy.deepcopy(raw(1))
    series = _SERIES.setdefault(entity, 8000 + len(_SERIES))
    data["id"] = f"00000000-0000-4000-{series:04d}-{n:012d}"
    data["entityId"] = entity
    data["entity"]["id"] = entity
    return data


class EntityReceiver:
    """Answers 503 to any request carrying an event of an entity in ``failing``, otherwise 200 after ``delay``;
    records what it delivered (2xx) in arrival order, the most requests in flight at once, and every connection."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.failing: set[str] = set()
        self.delivered: list[tuple[str, str]] = []  # (entity, event id)
        self.failed_requests = 0
        self.in_flight = 0
        self.peak = 0
        self.connections: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _handle(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if peer:
                self.connections.add((peer[0], peer[1]))
        try:
            body = json.loads(await request.read())
            events = body["data"] if isinstance(body, dict) and "data" in body else [body]
            if self.delay:
                await asyncio.sleep(self.delay)
            with self._lock:
                if any(e["entityId"] in self.failing for e in events):
                    self.failed_requests += 1
                    return web.Response(status=503, text="nope")
                self.delivered.extend((e["entityId"], e["eventId"]) for e in events)
            return web.Response(text="ok")
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self.runner, self.url = await serve_loopback(app)

    def close(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def ids_of(self, entity: str) -> list[str]:
        with self._lock:
            return [i for e, i in self.delivered if e == entity]

    def distinct(self) -> set[str]:
        with self._lock:
            return {i for _, i in self.delivered}


@contextmanager
def entity_receiver(delay: float = 0.0) -> Iterator[EntityReceiver]:
    r = EntityReceiver(delay)
    try:
        yield r
    finally:
        r.close()


def first_seen(ids: list[str]) -> list[str]:
    """``ids`` without repeats (a batch in flight when the operator died is sent again: at-least-once)."""
    return list(dict.fromkeys(ids))


def ordered_spec(url: str, ordering: str, max_in_flight: int) -> dict[str, Any]:
    spec = single_spec(url)
    spec["delivery"] = {"ordering": ordering, "maxInFlight": max_in_flight}
    return spec


def test_entity_ordering_holds_only_the_failing_entity_and_keeps_every_entitys_order(
    cluster: Cluster, crd: None, namespace: str, tmp_path: Path
) -> None:
    operator = OperatorProcess(cluster, tmp_path, [namespace], retry_schedule=SCHEDULE).start()
    try:
        with entity_receiver() as recv:
            recv.failing = {"bad"}
            cluster.apply(manifest("hook", ordered_spec(recv.url, "entity", 4), namespace))
            wait_status(cluster, namespace, "hook", lambda s: s.get("status") == "active")
            entities = ["bad", "e1", "e2", "e3", "e4"]
            posted = {e: [entity_event(e, n)["id"] for n in range(6)] for e in entities}
            assert operator.post([entity_event(e, n) for n in range(6) for e in entities])[0] == 202

            wait_for(lambda: all(recv.ids_of(e) == posted[e] for e in entities[1:]), 30, "the other entities")
            assert recv.ids_of("bad") == [] and recv.failed_requests >= 1
            held = wait_status(cluster, namespace, "hook", lambda s: s.get("status") == "awaitingRetry" and
                               s["counts"]["delivered"] == 24)  # fmt: skip
            ready = next(c for c in held["conditions"] if c["type"] == "Ready")
            assert "1 entities held for a retry" in ready["message"], ready
            assert held["counts"]["pending"] == 6 and held["failureDetails"]["lastFailedStatusCode"] == 503, held
            row = cluster.kubectl("get", "webhooks", "hook", "-n", namespace).stdout.splitlines()[1]
            assert "awaitingRetry" in row, row

            recv.failing = set()
            wait_for(lambda: recv.ids_of("bad") == posted["bad"], 30, "the held entity, in order, once it recovers")
            wait_status(cluster, namespace, "hook", lambda s: s.get("status") == "active" and
                        s["counts"]["pending"] == 0)  # fmt: skip
    finally:
        code = operator.stop()
        assert code == 0 and "Traceback" not in operator.tail(200), operator.tail(200)


def test_sigkill_mid_stream_loses_nothing_and_keeps_per_entity_order(
    cluster: Cluster, crd: None, namespace: str, tmp_path: Path
) -> None:
    operator = OperatorProcess(cluster, tmp_path, [namespace], retry_schedule=SCHEDULE).start()
    try:
        with entity_receiver(delay=0.02) as recv:
            recv.failing = {"bad"}  # held across the kill: its batch must come back as it was
            cluster.apply(manifest("hook", ordered_spec(recv.url, "entity", 8), namespace))
            wait_status(cluster, namespace, "hook", lambda s: s.get("status") == "active")
            entities = ["bad", *(f"e{i:02d}" for i in range(19))]
            posted = {e: [entity_event(e, n)["id"] for n in range(10)] for e in entities}
            for n in range(10):  # one POST per round: events keep arriving while the operator delivers
                assert operator.post([entity_event(e, n) for e in entities])[0] == 202
            wait_for(lambda: len(recv.distinct()) >= 40, 30, "delivery under way")
            operator.kill()  # SIGKILL mid-stream
            before = len(recv.distinct())
            assert before < 190, "the kill came mid-stream"
            operator.start()
            wait_for(lambda: len(recv.distinct()) == 190, 60, "every other event after the restart")
            assert recv.ids_of("bad") == []
            recv.failing = set()
            wait_for(lambda: len(recv.distinct()) == 200, 60, "the held entity after it recovers")
            for entity in entities:
                assert first_seen(recv.ids_of(entity)) == posted[entity], entity
            status = wait_status(cluster, namespace, "hook", lambda s: s["counts"]["pending"] == 0)
            assert status["status"] == "active"
    finally:
        code = operator.stop()
        assert code == 0 and "Traceback" not in operator.tail(200), operator.tail(200)


def test_ordering_none_delivers_everything_within_the_in_flight_cap(
    cluster: Cluster, crd: None, namespace: str, operator: OperatorProcess
) -> None:
    with entity_receiver(delay=0.1) as recv:
        cluster.apply(manifest("hook", ordered_spec(recv.url, "none", 4), namespace))
        wait_status(cluster, namespace, "hook", lambda s: s.get("status") == "active")
        events = [entity_event("same", n) for n in range(40)]
        started = time.monotonic()
        assert operator.post(events)[0] == 202
        wait_for(lambda: len(recv.distinct()) == 40, 30, "every event")
        elapsed = time.monotonic() - started
        assert recv.distinct() == {e["id"] for e in events}
        assert recv.peak == 4, f"in flight at once: {recv.peak} (maxInFlight 4)"
        assert len(recv.connections) <= 4, f"connections opened: {len(recv.connections)}"
        assert elapsed < 40 * 0.1, f"{elapsed:.1f} s: not in parallel"
