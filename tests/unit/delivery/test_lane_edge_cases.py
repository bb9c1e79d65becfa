"""Edge cases of the delivery core that an adversarial review of the redesign found (each test failed on the first
version of it): the test operation and the delivery concurrency limit, attempt numbering when the spec changes
mid-flight, what idle() waits for, a completion write that fails while the lane goes idle, and a store outage while
a backlog is paged in.

Built like test_lanes.py: MemoryStore, a scripted sender that never touches a socket, a hand-driven clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookSpec
from webhook_operator.delivery.dispatcher import encode_event
from webhook_operator.delivery.queue import PAGE
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.delivery.sender import Outcome, OutcomeKind
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.graph import Graph, NullStatus, build_graph
from webhook_operator.store.base import AttemptQuery, RoutedEvent, Store
from webhook_operator.store.memory import MemoryStore

from .fakes import Clock, ScriptedSender

ROOT = Path(__file__).resolve().parents[3]
KEY, OTHER = "ns/hook", "ns/other"
POLICY = RetryPolicy((10.0, 20.0, 40.0))
SLOW, FAST = "http://slow.test/hook", "http://fast.test/hook"


def fail(status: int = 500) -> Outcome:
    return Outcome(OutcomeKind.RETRYABLE, status, 1.0, f"HTTP {status}")


def event(i: int, entity_type: str = "table") -> ChangeEvent:
    return ChangeEvent.model_validate({
        "id": f"ev-{i:04d}", "eventType": "entityCreated", "entityType": entity_type, "entityId": f"e-{i}",
        "timestamp": 1_700_000_000_000 + i, "entity": {"id": f"e-{i}", "name": f"t{i}"},
    })  # fmt: skip


def target(key: str = KEY, endpoint: str = FAST, *, entities: tuple[str, ...] = ("table",),
           **cfg: Any) -> WebhookTarget:  # fmt: skip
    spec = WebhookSpec.model_validate({
        "webhookType": "Generic", "batchSize": 1,
        "eventFilters": [{"eventType": "entityCreated", "entities": list(entities)}],
        "webhookConfig": {"endpoint": endpoint, "timeout": 5, **cfg},
    })  # fmt: skip
    return WebhookTarget(key=key, spec=spec, secrets=("s3cret-value-1",))


class Rig:
    def __init__(self, store: MemoryStore | None = None, *, retry: RetryPolicy = POLICY,
                 max_concurrency: int = 64, clock: Callable[[], float] | None = None) -> None:  # fmt: skip
        self.clock = clock or Clock()
        self.store = store or MemoryStore(clock=self.clock)
        self.sender = ScriptedSender()
        self.graph: Graph = build_graph(store=self.store, sender=self.sender, status=NullStatus(), clock=self.clock,
                                        retry=retry, max_concurrency=max_concurrency)  # fmt: skip

    async def settle(self) -> None:
        await self.graph.dispatcher.settled(within=5)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    await r.graph.open()
    yield r
    for gate in (*r.sender.gates.values(), r.sender.call_gate):
        gate.set()
    await r.graph.close()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


# -- A test request is sent outside the delivery concurrency limit ---------------------------


async def test_a_test_request_does_not_wait_behind_deliveries_for_a_sending_slot() -> None:
    """docs/operations.md: a test "does not go through the queue, so it neither waits behind real events nor holds
    them up": with every delivery slot taken by a hanging receiver, a test of another webhook still goes out."""
    r = Rig(max_concurrency=1)
    await r.graph.open()
    gate = r.sender.gates[SLOW] = asyncio.Event()
    try:
        await r.graph.dispatcher.register(target(KEY, SLOW))
        await r.graph.dispatcher.register(target(OTHER, FAST, entities=("dashboard",)))
        await r.graph.dispatcher.submit([event(1)])  # only KEY matches: its delivery takes the one slot and hangs
        await until(lambda: r.sender.urls() == [SLOW])
        try:
            result = await asyncio.wait_for(r.graph.operations.test(OTHER, "zed"), 2.0)
        except TimeoutError:
            pytest.fail("the test of ns/other waited for the delivery slot held by ns/hook's hanging request")
        assert result.ok and r.sender.urls() == [SLOW, FAST]
    finally:
        gate.set()
        await r.graph.close()


async def test_a_hanging_test_request_does_not_hold_up_deliveries() -> None:
    """The other half of the same sentence: a test whose receiver hangs takes no delivery slot."""
    r = Rig(max_concurrency=1)
    await r.graph.open()
    gate = r.sender.gates[SLOW] = asyncio.Event()
    try:
        await r.graph.dispatcher.register(target(OTHER, SLOW, entities=("dashboard",)))
        await r.graph.dispatcher.register(target(KEY, FAST))
        testing = asyncio.create_task(r.graph.operations.test(OTHER, "zed"))
        await until(lambda: r.sender.urls() == [SLOW])
        await r.graph.dispatcher.submit([event(1)])
        try:
            await until(lambda: FAST in r.sender.urls(), timeout=2.0)
        except AssertionError:
            pytest.fail("the delivery to ns/hook waited for the slot held by a hanging test of ns/other")
        gate.set()
        assert (await testing).ok
    finally:
        gate.set()
        await r.graph.close()


# -- An attempt is numbered after its send, so the log agrees with status when the spec changes mid-flight ---------


async def test_the_log_line_of_an_attempt_agrees_with_the_retry_state_after_a_config_change_mid_flight(
    rig: Rig,
) -> None:
    """A re-registration with a changed spec during a request starts the schedule over; the failing attempt's log
    line must then say ``attempt 1``, as status does, and must not be counted as a retry."""
    assert isinstance(rig.clock, Clock)
    rig.sender.default = fail(500)
    rig.sender.gate_call = 3
    await rig.graph.dispatcher.register(target())
    await rig.graph.dispatcher.submit([event(1)])
    await rig.settle()  # attempt 1 failed
    rig.clock.now += 10.0
    rig.graph.dispatcher.worker(KEY).kick()
    await rig.settle()  # attempt 2 failed
    rig.clock.now += 20.0
    rig.graph.dispatcher.worker(KEY).kick()
    await until(lambda: len(rig.sender.requests) == 3)  # attempt 3 is in flight...
    await rig.graph.dispatcher.register(target(headers={"X-Changed": "yes"}))  # ...when the spec changes
    rig.sender.call_gate.set()
    await rig.settle()
    last = (await rig.store.attempts(KEY, AttemptQuery()))[-1]
    retry = (await rig.store.lane_state(KEY)).retry
    snap = rig.graph.dispatcher.snapshot(KEY)
    assert snap is not None and snap.message.startswith(f"attempt {retry.attempts} failed")
    assert last.attempt == retry.attempts, (
        f"the log line says attempt {last.attempt}, status and the stored retry state say {retry.attempts}"
    )


# -- idle() waits through retries; settled() only until nothing can be sent now -------


async def test_idle_waits_until_a_batch_that_waits_for_its_retry_has_gone() -> None:
    """``idle()`` waits while any lane has work, a retry wait included (tests and benchmarks with short schedules
    rely on it); ``settled()`` is the variant for tests that move the clock by hand."""
    r = Rig(retry=RetryPolicy((0.2,)), clock=time.time)
    await r.graph.open()
    try:
        r.sender.script = [fail(503)]
        await r.graph.dispatcher.register(target())
        await r.graph.dispatcher.submit([event(1)])
        await until(lambda: len(r.sender.requests) == 1)
        await r.graph.dispatcher.idle(within=5)
        assert len(r.sender.requests) == 2, "idle() returned while the held batch was still waiting for its retry"
    finally:
        await r.graph.close()


# -- A failed completion write is written again in the background --


async def test_a_failed_completion_is_written_again_even_when_no_further_batch_follows(rig: Rig) -> None:
    """docs/delivery.md: a failed completion write is written again until it succeeds. It must not depend on a next
    batch of the lane: otherwise, with the lane idle, a graceful restart would deliver the event a second time."""
    await rig.graph.dispatcher.register(target())
    rig.sender.on_send = lambda n: setattr(rig.store, "fail_writes", True)  # the completion write fails
    await rig.graph.dispatcher.submit([event(1)])
    await until(lambda: len(rig.sender.requests) == 1)
    await rig.settle()
    rig.sender.on_send = None
    rig.store.fail_writes = False  # the store is back; the lane has nothing more to send
    await asyncio.sleep(1.5)  # longer than the worker's 1 s back-off
    await rig.graph.dispatcher.stop()  # graceful
    await rig.store.close()

    again = Rig(rig.store)
    await again.graph.open()
    try:
        await again.graph.dispatcher.register(target())
        await again.settle()
        assert again.sender.requests == [], "the delivered event was sent again after a graceful restart"
    finally:
        await again.graph.close()


# -- A store outage while paging a backlog only delays the lane -----------------


async def test_a_store_outage_while_paging_a_backlog_does_not_stop_the_lane() -> None:
    """A page read of a long backlog that hits a store outage is retried after the back-off, like every other store
    error in the loop, instead of ending the worker until the next event arrives."""
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.open()
    events = [event(i) for i in range(PAGE + 1)]
    await store.enqueue([RoutedEvent(e.id, encode_event(e), [KEY]) for e in events])  # a backlog from before
    r = Rig(store, clock=clock)
    await r.graph.open()
    try:

        def outage_after_the_first_page(n: int) -> None:
            if n == PAGE:
                store.fail_reads = True

        r.sender.on_send = outage_after_the_first_page
        await r.graph.dispatcher.register(target())
        await until(lambda: len(r.sender.requests) == PAGE, timeout=30)
        await asyncio.sleep(0.05)  # the worker tries to page in the rest and fails
        store.fail_reads = False  # the store is back at once
        await asyncio.sleep(1.5)  # longer than the worker's 1 s back-off
        assert len(r.sender.requests) == PAGE + 1, "the rest of the backlog is stuck until another event arrives"
    finally:
        await r.graph.close()


# -- The store documentation names only methods the protocol has ------------------


def test_the_store_documentation_describes_the_protocol_the_code_has() -> None:
    """docs/delivery.md once promised ``claim``/``release`` leases after the protocol had dropped them."""
    text = (ROOT / "docs" / "delivery.md").read_text()
    for name in ("claim", "release"):
        if f"`{name}`" in text:
            assert hasattr(Store, name), f"docs/delivery.md documents Store.{name}, which the protocol does not have"


# -- A held batch larger than the new per-request size is split, not failed --


def batched_target(batch_size: int, **cfg: Any) -> WebhookTarget:
    spec = WebhookSpec.model_validate({
        "webhookType": "Generic", "batchSize": batch_size,
        "eventFilters": [{"eventType": "entityCreated", "entities": ["table"]}],
        "webhookConfig": {"endpoint": FAST, "timeout": 5, **cfg},
    })  # fmt: skip
    return WebhookTarget(key=KEY, spec=spec)


@pytest.mark.parametrize(
    "smaller", [{"batch_size": 1}, {"batch_size": 10, "payloadShape": "openMetadataEvent"}], ids=["batchSize", "shape"]
)
async def test_a_held_batch_is_split_when_requests_become_smaller(rig: Rig, smaller: dict[str, Any]) -> None:
    """A batch of three is held (its first try failed) when the spec changes to one event per request — batchSize
    lowered to 1, or the openMetadataEvent shape. Sending the held three in one request would be a permanent
    format error (the body holds one event); instead the held batch is cut to what a request may carry, and every
    event is then delivered, in order, once."""
    assert isinstance(rig.clock, Clock)
    rig.sender.script = [fail(503)]
    await rig.graph.dispatcher.register(batched_target(10))
    await rig.graph.dispatcher.submit([event(1), event(2), event(3)])
    await until(lambda: len(rig.sender.requests) == 1)
    await rig.settle()
    assert rig.sender.batches()[0] == ["ev-0001", "ev-0002", "ev-0003"]
    cfg = {k: v for k, v in smaller.items() if k != "batch_size"}
    await rig.graph.dispatcher.register(batched_target(smaller["batch_size"], **cfg))  # a new config resumes at once
    await rig.settle()
    assert rig.sender.batches()[1:] == [["ev-0001"], ["ev-0002"], ["ev-0003"]]
    state = await rig.store.lane_state(KEY)
    assert state.pending == 0 and state.retry.paused is None and state.counters.delivered == 3
