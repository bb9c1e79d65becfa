"""SQLite store: durability across reopen, duplicates once, group commit, log paging, leases, retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from webhook_operator.store.base import AttemptOutcome, AttemptQuery, AttemptRecord, RetryState, RoutedEvent
from webhook_operator.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.db")
    await s.open()
    yield s
    await s.close()


def _ev(i: int, *webhooks: str) -> RoutedEvent:
    return RoutedEvent(f"id-{i}", f'{{"n":{i}}}'.encode(), list(webhooks))


def _record(webhook: str, outcome: AttemptOutcome = AttemptOutcome.DELIVERED, **kw: object) -> AttemptRecord:
    base: dict[str, object] = dict(
        webhook=webhook,
        delivery_id="d",
        event_ids=["id-1"],
        attempt=1,
        started_at=time.time(),
        duration_ms=1.5,
        outcome=outcome,
    )
    base.update(kw)
    return AttemptRecord(**base)  # type: ignore[arg-type]


async def test_enqueue_routes_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SqliteStore(path)
    await s.open()
    result = await s.enqueue([_ev(1, "ns/a", "ns/b"), _ev(2, "ns/a"), _ev(3)])
    assert result.accepted == 3 and result.duplicates == 0
    assert [e.event_id for e in result.queued["ns/a"]] == ["id-1", "id-2"]
    assert [e.event_id for e in result.queued["ns/b"]] == ["id-1"]
    await s.close()

    reopened = SqliteStore(path)
    await reopened.open()
    pending = await reopened.pending("ns/a")
    assert [(e.event_id, e.body) for e in pending] == [("id-1", b'{"n":1}'), ("id-2", b'{"n":2}')]
    assert await reopened.pending_count("ns/b") == 1
    assert await reopened.webhooks_with_pending() == ["ns/a", "ns/b"]
    await reopened.close()


async def test_duplicate_ids_are_accepted_once(store: SqliteStore) -> None:
    first = await store.enqueue([_ev(1, "ns/a")])
    again = await store.enqueue([_ev(1, "ns/a"), _ev(2, "ns/a"), _ev(2, "ns/a")])
    assert first.seqs[0] is not None
    assert again.seqs[0] is None and again.seqs[1] is not None and again.seqs[2] is None
    assert (again.accepted, again.duplicates) == (1, 2)
    assert await store.pending_count("ns/a") == 2


async def test_complete_dequeues_logs_and_counts(store: SqliteStore) -> None:
    queued = (await store.enqueue([_ev(1, "ns/a"), _ev(2, "ns/a")])).queued["ns/a"]
    await store.complete("ns/a", [queued[0].qid], _record("ns/a"))
    assert [e.event_id for e in await store.pending("ns/a")] == ["id-2"]
    counters = await store.counters("ns/a")
    assert counters.delivered == 1 and counters.last_success_at is not None
    log = await store.attempts("ns/a", AttemptQuery())
    assert [r.outcome for r in log] == [AttemptOutcome.DELIVERED]


async def test_failure_persists_retry_state(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SqliteStore(path)
    await s.open()
    queued = (await s.enqueue([_ev(1, "ns/a")])).queued["ns/a"]
    retry = RetryState(
        held_qids=[queued[0].qid], attempts=2, next_attempt_at=123.0, last_status_code=503, last_reason="HTTP 503"
    )
    await s.fail("ns/a", _record("ns/a", AttemptOutcome.FAILED, status_code=503), retry)
    await s.close()
    s = SqliteStore(path)
    await s.open()
    assert await s.retry_state("ns/a") == retry
    assert (await s.counters("ns/a")).failed == 1
    await s.close()


async def test_skip_moves_held_batch_to_dead_letters_with_a_log_line(store: SqliteStore) -> None:
    queued = (await store.enqueue([_ev(1, "ns/a"), _ev(2, "ns/a")])).queued["ns/a"]
    await store.skip("ns/a", [queued[0].qid], _record("ns/a", AttemptOutcome.SKIPPED, note="skipped by alice"))
    assert [e.event_id for e in await store.pending("ns/a")] == ["id-2"]
    log = await store.attempts("ns/a", AttemptQuery(outcome=AttemptOutcome.SKIPPED))
    assert [r.note for r in log] == ["skipped by alice"]


async def test_concurrent_writes_share_commits(store: SqliteStore) -> None:
    before = store.commits
    results = await asyncio.gather(*(store.enqueue([_ev(i, "ns/a")]) for i in range(500)))
    assert all(r.accepted == 1 for r in results)
    commits = store.commits - before
    assert commits < 100, f"group commit did not group: {commits} commits for 500 enqueues"
    qids = [e.qid for e in await store.pending("ns/a")]
    assert qids == sorted(qids) and len(qids) == 500


async def test_a_failing_operation_does_not_fail_its_group(store: SqliteStore) -> None:
    def boom(conn: object) -> None:
        raise ValueError("bad row")

    good = store.enqueue([_ev(1, "ns/a")])
    bad = store._write(boom)
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert not isinstance(results[0], BaseException) and results[0].accepted == 1
    assert isinstance(results[1], ValueError)
    assert await store.pending_count("ns/a") == 1


async def test_attempt_log_pages_with_a_cursor_and_filters(store: SqliteStore) -> None:
    t0 = time.time()
    for i in range(25):
        outcome = AttemptOutcome.FAILED if i % 5 == 0 else AttemptOutcome.DELIVERED
        await store.log(_record("ns/a", outcome, started_at=t0 + i, attempt=i))
    await store.log(_record("ns/b"))
    first = await store.attempts("ns/a", AttemptQuery(limit=10))
    second = await store.attempts("ns/a", AttemptQuery(limit=10, after_id=first[-1].id))
    third = await store.attempts("ns/a", AttemptQuery(limit=10, after_id=second[-1].id))
    assert [r.attempt for r in first + second + third] == list(range(25))
    failed = await store.attempts("ns/a", AttemptQuery(outcome=AttemptOutcome.FAILED))
    assert [r.attempt for r in failed] == [0, 5, 10, 15, 20]
    window = await store.attempts("ns/a", AttemptQuery(since=t0 + 10, until=t0 + 12))
    assert [r.attempt for r in window] == [10, 11]


async def test_prune_never_drops_queued_events(store: SqliteStore) -> None:
    queued = (await store.enqueue([_ev(1, "ns/a"), _ev(2, "ns/a")])).queued["ns/a"]
    await store.complete("ns/a", [queued[0].qid], _record("ns/a"))
    removed = await store.prune(time.time() + 10)
    assert removed == 1
    assert [e.event_id for e in await store.pending("ns/a")] == ["id-2"]
    assert await store.events_by_id(["id-1"]) == []


async def test_requeue_puts_old_events_behind_newer_ones(store: SqliteStore) -> None:
    queued = (await store.enqueue([_ev(1, "ns/a"), _ev(2, "ns/a")])).queued["ns/a"]
    await store.complete("ns/a", [queued[0].qid], _record("ns/a"))
    entries = await store.requeue("ns/a", ["id-1", "id-9"], _record("ns/a", AttemptOutcome.REDELIVERY_QUEUED))
    assert [e.event_id for e in entries] == ["id-1"] and entries[0].body == b'{"n":1}'
    assert entries[0].qid > queued[1].qid
    assert [e.event_id for e in await store.pending("ns/a")] == ["id-2", "id-1"]


async def test_leases_exclude_other_owners_until_expiry(store: SqliteStore) -> None:
    assert await store.claim("ns/a", "replica-1", ttl=30)
    assert not await store.claim("ns/a", "replica-2", ttl=30)
    assert await store.claim("ns/a", "replica-1", ttl=30)  # renewal
    await store.release("ns/a", "replica-1")
    assert await store.claim("ns/a", "replica-2", ttl=0.0)
    await asyncio.sleep(0.01)
    assert await store.claim("ns/a", "replica-1", ttl=30)  # replica-2's lease expired


async def test_purge_forgets_a_webhook(store: SqliteStore) -> None:
    await store.enqueue([_ev(1, "ns/a"), _ev(2, "ns/b")])
    await store.purge("ns/a")
    assert await store.pending_count("ns/a") == 0 and await store.pending_count("ns/b") == 1


async def test_delivered_events_are_what_the_log_shows_delivered_or_skipped(store: SqliteStore) -> None:
    t0 = time.time()
    queued = (await store.enqueue([_ev(i, "ns/a") for i in range(1, 6)])).queued["ns/a"]
    await store.complete("ns/a", [queued[0].qid, queued[1].qid], _record("ns/a", event_ids=["id-1", "id-2"]))
    await store.fail("ns/a", _record("ns/a", AttemptOutcome.FAILED, event_ids=["id-3"]), RetryState())
    await store.skip("ns/a", [queued[3].qid], _record("ns/a", AttemptOutcome.SKIPPED, event_ids=["id-4"]))
    await store.log(_record("ns/b", event_ids=["id-5"]))
    got = await store.delivered_events("ns/a", t0 - 1, None, 100)
    assert [e.event_id for e in got] == ["id-1", "id-2", "id-4"]  # id-3 is still queued (failed), id-5 is ns/b's
    assert [e.event_id for e in await store.delivered_events("ns/a", t0 - 1, None, 2)] == ["id-1", "id-2"]
    assert await store.delivered_events("ns/a", time.time() + 10, None, 100) == []
    assert await store.delivered_events("ns/a", t0 - 10, t0 - 5, 100) == []
