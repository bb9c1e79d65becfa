"""Debounce/coalescing, rate cap and backoff rules with a fake clock (``status.schedule`` is pure)."""

from __future__ import annotations

import pytest

from webhook_operator.status.schedule import PatchOutcome, Scheduler, TokenBucket


def drain(s: Scheduler, now: float) -> list[str]:
    """Pop every due key and write it successfully at ``now``."""
    done = []
    while (key := s.pop_due(now)) is not None:
        s.finish(key, now, s.begin(key), PatchOutcome.WRITTEN)
        done.append(key)
    return done


def test_first_change_and_transitions_go_out_on_the_leading_edge() -> None:
    s = Scheduler(interval=2.0)
    s.mark("a", 0.0, urgent=True)
    assert drain(s, 0.0) == ["a"]
    # A transition within the interval waits for the spacing ...
    s.mark("a", 0.5, urgent=True)
    assert s.next_due() == 2.0 and drain(s, 1.9) == []
    assert drain(s, 2.0) == ["a"]
    # ... and goes at once when the last patch is older than the interval.
    s.mark("a", 10.0, urgent=True)
    assert drain(s, 10.0) == ["a"]


def test_counter_changes_are_trailing_edge_and_coalesced() -> None:
    s = Scheduler(interval=2.0)
    s.mark("a", 0.0, urgent=True)
    drain(s, 0.0)
    # 200 changes within a second: one more write, at last patch + interval, never pushed further out.
    for i in range(200):
        s.mark("a", 0.1 + i * 0.005, urgent=False)
    assert s.next_due() == 2.1  # first unwritten change + interval
    assert drain(s, 2.1) == ["a"] and s.next_due() is None
    # After a quiet period a counter change still waits one interval (batching a burst into one write).
    s.mark("a", 100.0, urgent=False)
    assert s.next_due() == 102.0


def test_an_urgent_change_pulls_a_pending_trailing_write_forward() -> None:
    s = Scheduler(interval=2.0)
    s.mark("a", 0.0, urgent=False)
    assert s.next_due() == 2.0
    s.mark("a", 0.5, urgent=True)
    assert s.next_due() == 0.5


def test_changes_while_in_flight_are_written_after_the_spacing() -> None:
    s = Scheduler(interval=2.0)
    s.mark("a", 0.0, urgent=True)
    key = s.pop_due(0.0)
    assert key == "a"
    version = s.begin("a")
    s.mark("a", 0.1, urgent=True)  # arrives while the write is in flight
    assert s.pop_due(0.2) is None  # never two writes of one webhook at once
    s.finish("a", 0.3, version, PatchOutcome.WRITTEN)
    assert s.next_due() == pytest.approx(2.3)
    assert drain(s, 2.3) == ["a"] and s.next_due() is None


def test_unchanged_does_not_count_as_a_patch() -> None:
    s = Scheduler(interval=2.0)
    s.mark("a", 0.0, urgent=True)
    key = s.pop_due(0.0)
    assert key is not None
    s.finish(key, 0.0, s.begin(key), PatchOutcome.UNCHANGED)
    s.mark("a", 0.5, urgent=True)
    assert s.next_due() == 0.5  # no spacing: nothing was sent


def test_transient_failures_back_off_and_keep_the_state() -> None:
    s = Scheduler(interval=0.0, backoff_initial=0.5, backoff_max=10.0)
    s.mark("a", 0.0, urgent=True)
    now, delays = 0.0, []
    for _ in range(7):
        key = s.pop_due(now)
        assert key == "a"
        s.finish(key, now, s.begin(key), PatchOutcome.RETRY)
        due = s.next_due()
        assert due is not None
        delays.append(due - now)
        now = due
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    # New changes do not bypass the backoff.
    s.mark("a", now - 5, urgent=True)
    assert s.next_due() == now
    assert s.ready(now - 1) == [] and s.next_retry() == now
    key = s.pop_due(now)
    assert key is not None
    s.finish(key, now, s.begin(key), PatchOutcome.WRITTEN)
    assert s.failures("a") == 0 and s.next_due() is None


def test_gone_and_forget_drop_the_webhook() -> None:
    s = Scheduler(interval=2.0)
    s.mark("a", 0.0, urgent=True)
    s.mark("b", 0.0, urgent=True)
    s.forget("b")
    key = s.pop_due(0.0)
    assert key == "a"
    s.finish("a", 0.0, s.begin("a"), PatchOutcome.GONE)
    assert "a" not in s and "b" not in s and s.pop_due(100.0) is None


def test_oldest_due_first_round_robin() -> None:
    s = Scheduler(interval=1.0)
    for name in ("a", "b", "c"):
        s.mark(name, 0.0, urgent=True)
    order = []
    now = 0.5
    # Under a cap of one write per 0.5 s, "a" changes all the time but must not starve the others.
    for _ in range(6):
        s.mark("a", now, urgent=True)
        key = s.pop_due(now)
        if key is not None:
            s.finish(key, now, s.begin(key), PatchOutcome.WRITTEN)
            order.append(key)
        now += 0.5
    assert order == ["a", "b", "c", "a", "a"]  # b and c get their turn before "a" goes again


def test_requeue_keeps_the_place_in_line() -> None:
    s = Scheduler(interval=1.0)
    s.mark("a", 0.0, urgent=True)
    s.mark("b", 0.1, urgent=True)
    key = s.pop_due(1.0)
    assert key == "a"
    s.requeue("a")
    assert s.pop_due(1.0) == "a"


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    assert bucket.try_take(0.0) and bucket.try_take(0.0) and not bucket.try_take(0.0)
    assert bucket.wait(0.0) == pytest.approx(0.1)
    assert bucket.try_take(0.1) and not bucket.try_take(0.1)
    assert bucket.try_take(10.0) and bucket.try_take(10.0) and not bucket.try_take(10.0)  # burst is capped
    with pytest.raises(ValueError):
        TokenBucket(rate=0)
