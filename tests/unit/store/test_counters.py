"""A webhook's counters and retry state as ``complete()`` writes them (the SQLite store writes them with one upsert
per delivery, issue 12): on every backend, with a retry state passed (as the parallel lane does) on a missing and on
an existing row, and after a purge; and the real SQLite store on a file created by the first schema (with the
``lease_owner``/``lease_expires`` columns it no longer uses), which the upsert must leave alone.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from webhook_operator.store.base import AttemptOutcome, Counters, KeyHold, LaneState, RetryState
from webhook_operator.store.codec import retry_to_json
from webhook_operator.store.sqlite import SqliteStore

from ._backends import T0, Clock, Harness, ev, record

DELIVERED, FAILED = AttemptOutcome.DELIVERED, AttemptOutcome.FAILED


# -- the contract, every backend -----------------------------------------------------------------------------


async def test_complete_with_a_retry_state_on_a_missing_row_keeps_it(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a")])).queued["ns/a"]
    other = RetryState(held_qids=(q[1].qid,), attempts=2, next_attempt_at=T0 + 30, last_status_code=503,
                       holds=(KeyHold(key="k2", qids=(q[1].qid,), attempts=2, next_attempt_at=T0 + 30),))  # fmt: skip
    await s.complete("ns/a", [q[0].qid], record("ns/a", DELIVERED, "id-1", started_at=T0 + 1, duration_ms=500.0), other)
    assert await s.lane_state("ns/a") == LaneState(other, Counters(1, 0, T0 + 1.5), 1)
    assert await s.webhook_keys() == ["ns/a"]


async def test_complete_with_a_retry_state_on_an_existing_row_replaces_it_and_leaves_failed(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(i, "ns/a") for i in range(1, 5)])).queued["ns/a"]
    first = RetryState(held_qids=(q[0].qid, q[1].qid), attempts=1, next_attempt_at=T0 + 5, last_status_code=502)
    await s.fail("ns/a", record("ns/a", FAILED, "id-1", "id-2"), first)
    await s.fail("ns/a", record("ns/a", FAILED, "id-1", "id-2"), replace_attempts(first, 2))
    await s.complete("ns/a", [q[2].qid], record("ns/a", DELIVERED, "id-3", started_at=T0 + 7, duration_ms=0.0))
    # A parallel lane completes one key while another still holds: the retry state it passes replaces the row's.
    still = RetryState(held_qids=(q[0].qid,), attempts=3, next_attempt_at=T0 + 60, last_reason="HTTP 502")
    line = record("ns/a", DELIVERED, "id-2", "id-4", started_at=T0 + 9, duration_ms=250.0)
    await s.complete("ns/a", [q[1].qid, q[3].qid], line, still)
    assert await s.lane_state("ns/a") == LaneState(still, Counters(3, 2, T0 + 9.25), 1)
    # And None clears it (NULL), counters still added to, failed still untouched.
    await s.complete("ns/a", [q[0].qid], record("ns/a", DELIVERED, "id-1", started_at=T0 + 11, duration_ms=0.0))
    assert await s.lane_state("ns/a") == LaneState(RetryState(), Counters(4, 2, T0 + 11), 0)


async def test_complete_after_purge_starts_the_counters_over(h: Harness) -> None:
    s = h.store
    q = (await s.enqueue([ev(1, "ns/a"), ev(2, "ns/a")])).queued["ns/a"]
    await s.fail("ns/a", record("ns/a", FAILED), RetryState(held_qids=(q[0].qid,), attempts=1))
    await s.complete("ns/a", [q[0].qid], record("ns/a", DELIVERED, "id-1", started_at=T0, duration_ms=0.0))
    await s.purge("ns/a")
    assert await s.lane_state("ns/a") == LaneState(RetryState(), Counters(), 0)
    q2 = (await s.enqueue([ev(3, "ns/a")])).queued["ns/a"]
    await s.complete("ns/a", [q2[0].qid], record("ns/a", DELIVERED, "id-3", started_at=T0 + 2, duration_ms=0.0))
    assert await s.lane_state("ns/a") == LaneState(RetryState(), Counters(1, 0, T0 + 2), 0)


def replace_attempts(retry: RetryState, attempts: int) -> RetryState:
    return replace(retry, attempts=attempts)


# -- the real store on a file the first schema created ------------------------------------------------------

FIRST_SCHEMA_WEBHOOKS = """
CREATE TABLE webhooks (
    webhook TEXT PRIMARY KEY,
    retry TEXT,
    delivered INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    last_success_at REAL,
    lease_owner TEXT,
    lease_expires REAL
);
"""


async def test_complete_on_a_file_from_the_first_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(FIRST_SCHEMA_WEBHOOKS)
    conn.execute("INSERT INTO webhooks(webhook, retry, delivered, failed, lease_owner, lease_expires) "
                 "VALUES ('ns/a', ?, 4, 2, 'gone', 1.0)", (retry_to_json(RetryState(attempts=2)),))  # fmt: skip
    conn.commit()
    conn.close()
    store = SqliteStore(path, clock=Clock())
    await store.open()
    try:
        q = (await store.enqueue([ev(1, "ns/a", "ns/b")])).queued
        await store.complete("ns/a", [q["ns/a"][0].qid], record("ns/a", DELIVERED, "id-1", started_at=T0,
                                                                 duration_ms=0.0))  # fmt: skip
        await store.complete("ns/b", [q["ns/b"][0].qid], record("ns/b", DELIVERED, "id-1", started_at=T0,
                                                                 duration_ms=0.0))  # fmt: skip
        assert await store.lane_state("ns/a") == LaneState(RetryState(), Counters(5, 2, T0), 0)
        assert await store.lane_state("ns/b") == LaneState(RetryState(), Counters(1, 0, T0), 0)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT lease_owner, lease_expires FROM webhooks ORDER BY webhook").fetchall() == [
        ("gone", 1.0), (None, None)]  # fmt: skip
    conn.close()
