"""Lane changes reach the state observer (status, gauges) once per event-loop turn, with the lane as it is at the
end of the turn; ``settled()`` / ``snapshot()`` / ``stop()`` flush, so nobody looking sees an older state; an
unregistered webhook is not reported after its status was forgotten; trigger transitions stay synchronous."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from webhook_operator.api.outcomes import WebhookSnapshot
from webhook_operator.api.webhook import WebhookState
from webhook_operator.delivery.lane import Lane
from webhook_operator.delivery.lane_reports import LaneReports
from webhook_operator.graph import NullStatus, build_graph
from webhook_operator.store.memory import MemoryStore

from .fakes import Clock, ScriptedSender
from .test_lanes import KEY, event, target


class FakeLane:
    def __init__(self, key: str) -> None:
        self.key, self.delivered = key, 0

    def snapshot(self) -> WebhookSnapshot:
        return WebhookSnapshot(self.key, WebhookState.ACTIVE, "", "", self.delivered, 0, 0)


class Seen(NullStatus):
    def __init__(self, fail_for: str | None = None) -> None:
        self.snapshots: list[WebhookSnapshot] = []
        self.fail_for = fail_for

    def webhook_changed(self, snapshot: WebhookSnapshot) -> None:
        if snapshot.key == self.fail_for:
            raise RuntimeError("observer bug")
        self.snapshots.append(snapshot)


def lane(fake: FakeLane) -> Lane:
    return cast(Lane, fake)


async def test_changes_in_one_turn_are_reported_once_per_lane_as_they_are_at_its_end() -> None:
    seen = Seen()
    reports = LaneReports(seen, lambda key: True)
    a, b = FakeLane("ns/a"), FakeLane("ns/b")
    for _ in range(5):
        a.delivered += 1
        reports.mark(lane(a))
    reports.mark(lane(b))
    assert seen.snapshots == []  # nothing built yet
    await asyncio.sleep(0)
    assert [(s.key, s.delivered) for s in seen.snapshots] == [("ns/a", 5), ("ns/b", 0)]
    a.delivered += 1
    reports.mark(lane(a))
    reports.flush()  # at once, for whoever looks now
    await asyncio.sleep(0)
    assert [(s.key, s.delivered) for s in seen.snapshots][2:] == [("ns/a", 6)]


async def test_a_lane_no_longer_reportable_is_not_reported_and_an_observer_bug_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Seen(fail_for="ns/bug")
    gone: set[str] = set()
    reports = LaneReports(seen, lambda key: key not in gone)
    for key in ("ns/bug", "ns/gone", "ns/kept"):
        reports.mark(lane(FakeLane(key)))
    gone.add("ns/gone")  # unregistered (its status forgotten) before the turn ended
    with caplog.at_level(logging.ERROR):
        reports.flush()
    assert [s.key for s in seen.snapshots] == ["ns/kept"]
    assert "state observer failed for ns/bug" in caplog.text


async def test_a_busy_lane_is_reported_at_most_once_per_interval_and_never_later_than_that() -> None:
    seen = Seen()
    reports = LaneReports(seen, lambda key: True, interval=0.2)
    a = FakeLane("ns/a")
    reports.mark(lane(a))
    await asyncio.sleep(0)
    assert [s.delivered for s in seen.snapshots] == [0]  # after a quiet spell: at the end of the turn
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 0.15:  # busy: a change every turn
        a.delivered += 1
        reports.mark(lane(a))
        await asyncio.sleep(0.01)
    assert len(seen.snapshots) == 1, "reported again within the interval"
    await asyncio.sleep(0.1)
    assert [s.delivered for s in seen.snapshots][1:] == [a.delivered], "the last change waited past the interval"


def test_without_a_running_loop_a_change_is_reported_at_once() -> None:
    seen = Seen()
    LaneReports(seen, lambda key: True).mark(lane(FakeLane("ns/a")))
    assert [s.key for s in seen.snapshots] == ["ns/a"]


async def test_the_dispatcher_reports_fewer_snapshots_than_changes_and_the_last_one_is_current() -> None:
    clock = Clock()
    seen: list[Any] = []

    class Observer(NullStatus):
        def webhook_changed(self, snapshot: WebhookSnapshot) -> None:
            seen.append(snapshot)

    graph = build_graph(store=MemoryStore(clock=clock), sender=ScriptedSender(), status=Observer(), clock=clock)
    await graph.open()
    try:
        d = graph.dispatcher
        await d.register(target(batch=1))
        await asyncio.gather(*(d.submit([event(i)]) for i in range(50)))
        await d.settled(within=5)
        last = seen[-1]
        assert last == d.snapshot(KEY) and last.delivered == 50 and last.pending == 0
        assert len(seen) < 2 * 50, "one snapshot per change (queued, delivered): nothing was coalesced"
        await d.unregister(KEY)
        graph_seen = len(seen)
        await asyncio.sleep(0.01)
        assert len(seen) == graph_seen, "an unregistered webhook is reported again"
    finally:
        await graph.close()


async def test_a_change_after_an_explicit_flush_with_a_report_pending_is_still_reported() -> None:
    # flush() empties the marks but leaves the spaced report armed: a change marked now must ride on it.
    seen = Seen()
    reports = LaneReports(seen, lambda key: True, interval=0.1)
    a = FakeLane("ns/a")
    reports.mark(lane(a))
    await asyncio.sleep(0)  # reported: the next report is spaced
    a.delivered = 1
    reports.mark(lane(a))  # armed for the end of the interval
    reports.flush()  # someone looks: reported at once, the timer stays armed
    a.delivered = 2
    reports.mark(lane(a))  # the final state, with a timer already armed
    await asyncio.sleep(0.2)
    assert [s.delivered for s in seen.snapshots] == [0, 1, 2]


async def test_a_change_made_while_reporting_is_reported_in_the_next_report() -> None:
    a, b = FakeLane("ns/a"), FakeLane("ns/b")

    class Marking(Seen):
        def webhook_changed(self, snapshot: WebhookSnapshot) -> None:
            super().webhook_changed(snapshot)
            if snapshot.key == "ns/a" and b.delivered == 0:
                b.delivered = 1
                reports.mark(lane(b))  # an observer that causes another change

    seen = Marking()
    reports = LaneReports(seen, lambda key: True, interval=0.05)
    reports.mark(lane(a))
    await asyncio.sleep(0.15)
    assert [(s.key, s.delivered) for s in seen.snapshots] == [("ns/a", 0), ("ns/b", 1)]
