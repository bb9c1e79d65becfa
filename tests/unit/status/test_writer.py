"""StatusWriter with an injected patch function (the real client path is covered by the integration tests)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes.client import ApiException

from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.api.webhook_status import WebhookState as S
from webhook_operator.status.events import ObjectRef
from webhook_operator.status.summary import OperatorConditions, pruned
from webhook_operator.status.writer import StatusWriter

from .fakes import FakeClock, Recorder, unused_client


class FakeApi:
    """Records patches with the time ``clock`` says; ``errors`` are raised (first in, first out) before succeeding."""

    def __init__(self) -> None:
        self.clock: Callable[[], float] = time.monotonic
        self.patches: list[tuple[str, str, dict[str, Any], float]] = []
        self.errors: list[BaseException] = []
        self.threads: set[str] = set()
        self.stored: dict[str, dict[str, Any]] = {}

    def __call__(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.threads.add(threading.current_thread().name)
        if self.errors:
            raise self.errors.pop(0)
        self.patches.append((namespace, name, status, self.clock()))
        self.stored[f"{namespace}/{name}"] = pruned(status)


def snap(key: str = "ns/h", state: S = S.ACTIVE, delivered: int = 0, **kw: Any) -> WebhookSnapshot:
    reason = {S.ACTIVE: Reason.DELIVERING, S.AWAITING_RETRY: Reason.DELIVERY_FAILING}.get(state, Reason.DISABLED)
    return WebhookSnapshot(key, state, reason, f"{delivered} delivered", delivered, 0, 0, **kw)


@pytest.fixture
async def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
async def make_writer(api: FakeApi) -> AsyncIterator[Callable[..., StatusWriter]]:
    writers: list[StatusWriter] = []

    def make(**kw: Any) -> StatusWriter:
        kw.setdefault("interval", 0.3)
        writer = StatusWriter(patcher=api, **kw)
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        await writer.stop(grace=2)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_rapid_snapshots_coalesce_into_two_patches(
    api: FakeApi, make_writer: Callable[..., StatusWriter]
) -> None:
    """200 snapshots 2 ms apart: the first is written at once, the other 199 coalesce into one patch an interval
    later. The clock is fake and the test runs the writer's passes (``pump``) itself, so the result never depends
    on how fast this machine gets through 200 iterations (it used to have to fit them in the 0.5 s interval)."""
    clock = FakeClock()
    api.clock = clock
    writer = make_writer(interval=0.5, clock=clock)
    writer.set_generation("ns/h", 1)
    writer.webhook_changed(snap(delivered=0))
    assert writer.pump() is None  # the leading edge went out; only its completion could make more work
    await eventually(lambda: writer.patches_total == 1)
    for i in range(1, 200):
        clock.now = i * 0.002
        writer.webhook_changed(snap(delivered=i))
        # Nothing starts: the trailing write is due an interval after the first unwritten change, and stays there.
        assert writer.pump() == pytest.approx(0.502)
    clock.now = 0.51
    assert writer.pump() is None  # the trailing write started
    await eventually(lambda: writer.patches_total == 2)
    clock.now = 60.0
    assert writer.pump() is None and await writer.flush_now() == 0  # nothing more follows
    assert len(api.patches) == 2
    assert [p[2]["counts"]["delivered"] for p in api.patches] == [0, 199]  # the latest state, coalesced
    assert api.patches[1][3] - api.patches[0][3] >= 0.45  # spaced by the interval
    assert writer.patches_total == 2 and writer.patches_by_key["ns/h"] == 2
    assert api.threads and all(t.startswith("status-writer") for t in api.threads)  # off the event loop


async def test_unchanged_status_is_not_rewritten(api: FakeApi, make_writer: Callable[..., StatusWriter]) -> None:
    writer = make_writer(interval=0.05)
    await writer.start()
    writer.webhook_changed(snap(delivered=1))
    await eventually(lambda: len(api.patches) == 1)
    for _ in range(5):
        writer.webhook_changed(snap(delivered=1))
        await asyncio.sleep(0.06)
    assert len(api.patches) == 1 and writer.stats.skipped_total >= 1


async def test_transition_goes_out_at_once_after_a_quiet_period(
    api: FakeApi, make_writer: Callable[..., StatusWriter]
) -> None:
    writer = make_writer(interval=0.3)
    await writer.start()
    writer.webhook_changed(snap(delivered=1))
    await eventually(lambda: len(api.patches) == 1)
    await asyncio.sleep(0.35)
    started = time.monotonic()
    writer.webhook_changed(snap(state=S.AWAITING_RETRY, delivered=1))
    await eventually(lambda: len(api.patches) == 2)
    assert time.monotonic() - started < 0.2  # leading edge
    started = time.monotonic()
    writer.webhook_changed(snap(delivered=2))  # counters only: trailing edge
    await eventually(lambda: len(api.patches) == 3)
    assert time.monotonic() - started >= 0.25


async def test_not_found_forgets_quietly(
    api: FakeApi, make_writer: Callable[..., StatusWriter], caplog: pytest.LogCaptureFixture
) -> None:
    writer = make_writer()
    api.errors.append(ApiException(status=404, reason="Not Found"))
    await writer.start()
    writer.webhook_changed(snap())
    await eventually(lambda: writer.patches_total == 1)
    await asyncio.sleep(0.05)
    assert "ns/h" not in writer.patches_by_key and writer.stats.patch_failures_total == 0
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert await writer.flush_now() == 0  # nothing left to write


@pytest.mark.parametrize(
    "error", [ApiException(status=503), ApiException(status=429), ConnectionRefusedError(), TimeoutError()]
)
async def test_transient_errors_retry_until_the_state_lands(
    api: FakeApi, make_writer: Callable[..., StatusWriter], error: BaseException
) -> None:
    writer = make_writer(backoff_initial=0.05, backoff_max=0.1)
    api.errors.extend([error, error, error])
    await writer.start()
    writer.webhook_changed(snap(delivered=7))
    await eventually(lambda: bool(api.patches))
    assert api.stored["ns/h"]["counts"]["delivered"] == 7
    assert writer.patches_total == 4 and writer.stats.patch_failures_total == 3


async def test_rejected_body_is_not_resent(api: FakeApi, make_writer: Callable[..., StatusWriter]) -> None:
    writer = make_writer(interval=0.05)
    api.errors.append(ApiException(status=422, reason="Invalid"))
    await writer.start()
    writer.webhook_changed(snap(delivered=1))
    await asyncio.sleep(0.3)
    assert writer.patches_total == 1 and not api.patches
    writer.webhook_changed(snap(delivered=2))  # a new status is tried again
    await eventually(lambda: len(api.patches) == 1)


async def test_global_cap_serves_every_webhook(api: FakeApi, make_writer: Callable[..., StatusWriter]) -> None:
    writer = make_writer(interval=0.05, max_patches_per_second=20)
    await writer.start()
    started = time.monotonic()
    for i in range(40):
        writer.webhook_changed(snap(key=f"ns/h{i}"))
    await eventually(lambda: len(api.patches) == 40)
    # A burst of 20, then 20 per second.
    assert time.monotonic() - started >= 0.9
    assert {p[1] for p in api.patches} == {f"h{i}" for i in range(40)}
    assert [p[1] for p in api.patches[:20]] == [f"h{i}" for i in range(20)]  # oldest first


async def test_stop_flushes_the_final_state(api: FakeApi, make_writer: Callable[..., StatusWriter]) -> None:
    writer = make_writer(interval=60)
    await writer.start()
    writer.webhook_changed(snap(delivered=1))
    await eventually(lambda: len(api.patches) == 1)
    writer.webhook_changed(snap(delivered=5))
    writer.webhook_changed(snap(key="ns/other", delivered=3))
    await writer.stop(grace=5)
    assert api.stored["ns/h"]["counts"]["delivered"] == 5
    assert api.stored["ns/other"]["counts"]["delivered"] == 3


async def test_generation_extra_conditions_and_existing_status(
    api: FakeApi, make_writer: Callable[..., StatusWriter]
) -> None:
    writer = make_writer(interval=0.05)
    existing = {
        "observedGeneration": 2,
        "status": "active",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Idle", "lastTransitionTime": "2020-01-01T00:00:00Z"}
        ],
    }
    writer.set_generation("ns/h", 2, uid="u-1", current_status=existing)
    writer.webhook_changed(snap())
    assert await writer.flush_now() == 1
    ready = api.stored["ns/h"]["conditions"][0]
    assert ready["lastTransitionTime"] == "2020-01-01T00:00:00Z"  # kept across an operator restart
    assert api.stored["ns/h"]["observedGeneration"] == 2
    writer.set_generation("ns/h", 3)
    writer.set_extra("ns/h", OperatorConditions(configuration_error="Secret hmac not found"))
    assert await writer.flush_now() == 1
    assert api.stored["ns/h"]["observedGeneration"] == 3 and api.stored["ns/h"]["status"] == "failed"
    writer.set_extra("ns/h", OperatorConditions())
    assert await writer.flush_now() == 1
    assert api.stored["ns/h"]["status"] == "active"
    assert await writer.flush_now() == 0


async def test_nothing_is_written_before_there_is_something_to_say(
    api: FakeApi, make_writer: Callable[..., StatusWriter]
) -> None:
    writer = make_writer()
    writer.set_generation("ns/h", 1)
    assert await writer.flush_now() == 0
    with pytest.raises(ValueError, match="namespace/name"):
        writer.webhook_changed(snap(key="no-namespace"))


async def test_events_on_transitions_and_on_request(api: FakeApi, make_writer: Callable[..., StatusWriter]) -> None:
    recorder = Recorder(unused_client)
    try:
        writer = make_writer(events=recorder)
        writer.set_generation("ns/h", 1, uid="u-1")
        writer.webhook_changed(snap())
        writer.webhook_changed(snap(state=S.AWAITING_RETRY))
        writer.webhook_changed(snap(state=S.AWAITING_RETRY, delivered=3))
        writer.webhook_changed(snap())
        writer.record_event("ns/h", "Warning", "InlineSecret", "spec.webhookConfig.secretKey is inline")
        writer.set_extra("ns/h", OperatorConditions(configuration_error="Secret hmac not found"))
        await writer.flush_now()
        assert [s[0] for s in recorder.sent] == [
            "DeliveryFailing",
            "DeliveryRecovered",
            "InlineSecret",
            "ConfigurationError",
        ]
        writer.forget("ns/h")
        assert await writer.flush_now() == 0
    finally:
        recorder.close()


def test_needs_a_client_or_a_patcher() -> None:
    with pytest.raises(ValueError):
        StatusWriter()


async def test_object_refs_carry_the_uid(api: FakeApi, make_writer: Callable[..., StatusWriter]) -> None:
    seen: list[ObjectRef] = []

    class Capture(Recorder):
        async def record(self, ref: ObjectRef, type: str, reason: str, message: str) -> bool:
            seen.append(ref)
            return True

    recorder = Capture(unused_client)
    try:
        writer = make_writer(events=recorder)
        writer.set_generation("ns/h", 1, uid="u-1")
        writer.webhook_changed(snap(state=S.AWAITING_RETRY))
        await writer.flush_now()
        assert seen == [ObjectRef("ns", "h", "u-1")]
    finally:
        recorder.close()


async def test_a_saturated_pool_never_stalls(api: FakeApi, make_writer: Callable[..., StatusWriter]) -> None:
    """Regression: the runner must see a slot free up as soon as a write finishes (not after done-callbacks)."""
    writer = make_writer(concurrency=1)
    await writer.start()
    for i in range(5):
        writer.webhook_changed(snap(key=f"ns/h{i}"))
    await eventually(lambda: len(api.patches) == 5, timeout=2)


async def test_last_test_and_handled_annotations_are_written_and_kept(
    api: FakeApi, make_writer: Callable[..., StatusWriter]
) -> None:
    writer = make_writer(interval=0.2)
    existing = {"status": "active", "lastTest": {"time": "2020-01-01T00:00:00.000Z", "success": True},
                "handledAnnotations": {"test": "0", "skip": "s"}}  # fmt: skip
    writer.set_generation("ns/h", 1, current_status=existing)
    writer.webhook_changed(snap())
    await writer.start()
    await eventually(lambda: len(api.patches) == 1)
    assert api.stored["ns/h"]["lastTest"] == existing["lastTest"]  # an operator restart keeps them
    assert api.stored["ns/h"]["handledAnnotations"] == {"test": "0", "skip": "s"}
    writer.set_handled("ns/h", "test", "1")
    writer.set_last_test("ns/h", {"time": "2027-01-15T08:00:00.000Z", "success": False, "statusCode": 503})
    await eventually(lambda: api.stored["ns/h"].get("lastTest", {}).get("statusCode") == 503)
    assert api.stored["ns/h"]["handledAnnotations"] == {"test": "1", "skip": "s"}
    patches = len(api.patches)
    writer.set_handled("ns/h", "test", "1")  # unchanged: nothing to write
    writer.webhook_changed(snap(delivered=3))  # a counter change keeps lastTest in the complete status
    assert await writer.flush_now() == 1 and len(api.patches) == patches + 1
    assert api.stored["ns/h"]["lastTest"]["statusCode"] == 503 and api.stored["ns/h"]["counts"]["delivered"] == 3
