"""What only SQLite has: group commit, WAL and synchronous modes, a full disk, files from older versions.

Everything a backend promises is in ``test_contract.py``, which runs against SQLite too."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from webhook_operator.store import sqlite_commit, sqlite_schema
from webhook_operator.store.base import (
    AttemptOutcome,
    AttemptQuery,
    Counters,
    LaneState,
    RetryState,
    StoreUnavailable,
)
from webhook_operator.store.sqlite import SqliteStore

from ._backends import T0, Clock, ev, record, sqlite_disk_full


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.db", clock=Clock())
    await s.open()
    yield s
    await s.close()


def _raw(path: Path) -> closing[sqlite3.Connection]:
    """A second connection, as another process would open the file."""
    return closing(sqlite3.connect(path, isolation_level=None))


async def test_concurrent_writes_share_commits(store: SqliteStore) -> None:
    before = store.commits
    results = await asyncio.gather(*(store.enqueue([ev(i, "ns/a")]) for i in range(500)))
    assert all(r.accepted == 1 for r in results)
    commits = store.commits - before
    assert commits < 100, f"group commit did not group: {commits} commits for 500 enqueues"
    qids = [e.qid for e in await store.pending("ns/a")]
    assert qids == sorted(qids) and len(qids) == 500


async def test_writes_run_in_the_order_they_were_made_across_groups(store: SqliteStore) -> None:
    ran: list[int] = []

    def op(i: int) -> Callable[[sqlite3.Connection], int]:
        def run(conn: sqlite3.Connection) -> int:
            ran.append(i)
            return i

        return run

    writes: list[asyncio.Future[int]] = []
    for turn in range(20):  # batches from 20 loop turns queue up while the writer commits earlier ones
        writes += [asyncio.ensure_future(store._db.write(op(turn * 10 + i), durable=turn % 2 == 0)) for i in range(10)]
        await asyncio.sleep(0)
    assert await asyncio.gather(*writes) == list(range(200))
    assert ran == list(range(200))


async def test_close_lets_writes_already_made_commit_and_refuses_later_ones(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "store.db", clock=Clock())
    await s.open()
    writes = [asyncio.ensure_future(s.enqueue([ev(i, "ns/a")])) for i in range(50)]
    await asyncio.sleep(0)  # the writes are queued, none is answered yet
    await s.close()
    assert all(w.done() and w.result().accepted == 1 for w in writes)
    with pytest.raises(StoreUnavailable, match="not open"):
        await s.enqueue([ev(99, "ns/a")])
    with _raw(tmp_path / "store.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0] == 50


async def test_a_failing_operation_does_not_fail_its_group(store: SqliteStore) -> None:
    def boom(conn: object) -> None:
        raise ValueError("bad row")

    good = store.enqueue([ev(1, "ns/a")])
    bad = store._db.write(boom)
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert not isinstance(results[0], BaseException) and results[0].accepted == 1
    assert isinstance(results[1], ValueError)
    assert (await store.lane_state("ns/a")).pending == 1


async def test_a_full_disk_acknowledges_nothing_it_did_not_keep(store: SqliteStore) -> None:
    await store.enqueue([ev(1, "ns/a")])
    await sqlite_disk_full(store, True)
    small = store.enqueue([ev(2, "ns/a")])
    big = store.enqueue([ev(3, "ns/a", body=b"x" * 500_000)])
    results = await asyncio.gather(small, big, return_exceptions=True)  # one group
    assert isinstance(results[1], StoreUnavailable) and "full" in str(results[1])
    kept = await store.events_by_id(["id-2", "id-3"])
    # SQLite may roll back the statement or the whole group; either way an acknowledgement means it is stored.
    assert [e.event_id for e in kept] == ([] if isinstance(results[0], StoreUnavailable) else ["id-2"])
    await sqlite_disk_full(store, False)
    assert (await store.enqueue([ev(3, "ns/a", body=b"x" * 500_000)])).accepted == 1


async def test_bookkeeping_commits_without_fsync_and_acknowledged_writes_with_it(store: SqliteStore) -> None:
    q = (await store.enqueue([ev(1, "ns/a")])).queued["ns/a"]
    assert store._db._current_sync == "FULL"
    await store.complete("ns/a", [q[0].qid], record("ns/a"))
    await store.log(record("ns/a"))
    assert store._db._current_sync == "NORMAL"  # a lost completion costs a repeated delivery, not an event
    await store.save_retry_state("ns/a", RetryState())
    assert store._db._current_sync == "FULL"


@pytest.mark.parametrize("mode", ["FULL", "NORMAL", "EXTRA"])
async def test_the_file_is_in_wal_mode_whatever_the_synchronous_mode(tmp_path: Path, mode: str) -> None:
    s = SqliteStore(tmp_path / "nested" / "store.db", synchronous=mode)
    await s.open()
    assert (await s.enqueue([ev(1, "ns/a")])).accepted == 1
    await s.close()
    with _raw(tmp_path / "nested" / "store.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_unknown_synchronous_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(tmp_path / "s.db", synchronous="OFF")


async def test_a_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    s = SqliteStore(tmp_path / "dir.db")
    with pytest.raises(StoreUnavailable, match="cannot open"):
        await s.open()
    await s.close()


def _writers() -> int:
    return [t.name for t in threading.enumerate()].count("store-writer")


async def test_open_retried_after_failures_leaves_one_writer_thread(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"not a database, " * 512)  # opens as a file; SQLite refuses it on the writer thread
    before = _writers()
    s = SqliteStore(path)
    for _ in range(3):  # the service retries ``open`` without ``close`` until the file is usable
        with pytest.raises(StoreUnavailable, match="cannot open"):
            await s.open()
    assert _writers() == before
    path.write_bytes(b"")
    await s.open()
    assert (await s.enqueue([ev(1, "ns/a")])).accepted == 1
    assert _writers() == before + 1
    await s.close()
    assert _writers() == before


async def test_a_failed_open_after_the_writer_connected_stops_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, calls = sqlite_schema.connect, []

    def reader_fails_once(path: str, synchronous: str) -> sqlite3.Connection:
        calls.append(path)
        if len(calls) == 2:  # the writer thread connected; the reader's connection fails
            raise sqlite3.OperationalError("unable to open database file")
        return real(path, synchronous)

    monkeypatch.setattr(sqlite_commit, "connect", reader_fails_once)
    before = _writers()
    s = SqliteStore(tmp_path / "store.db")
    with pytest.raises(StoreUnavailable, match="cannot open"):
        await s.open()
    assert _writers() == before, "the writer thread of the failed attempt is still there"
    await s.open()
    assert (await s.enqueue([ev(1, "ns/a")])).accepted == 1  # one writer, on this attempt's queue
    assert _writers() == before + 1
    await s.close()


async def test_skips_are_kept_as_dead_letters_until_retention(store: SqliteStore) -> None:
    q = (await store.enqueue([ev(1, "ns/a"), ev(2, "ns/a")])).queued["ns/a"]
    await store.skip("ns/a", [q[0].qid, q[1].qid], record("ns/a", AttemptOutcome.SKIPPED, started_at=T0 + 5))
    [line] = await store.attempts("ns/a", AttemptQuery())
    with _raw(Path(store.path)) as conn:
        rows = conn.execute("SELECT webhook, seq, event_id, skipped_at, attempt_id FROM dead_letters ORDER BY seq")
        assert rows.fetchall() == [("ns/a", e.seq, e.event_id, T0 + 5, line.id) for e in q]
    await store.prune(T0 + 6)
    with _raw(Path(store.path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0] == 0


# The schema as released before queue leases were dropped from the store protocol.
_OLD_SCHEMA = """
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, received_at REAL NOT NULL,
    body BLOB NOT NULL);
CREATE INDEX events_received_at ON events(received_at);
CREATE TABLE queue (qid INTEGER PRIMARY KEY AUTOINCREMENT, webhook TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX queue_webhook ON queue(webhook, qid);
CREATE INDEX queue_seq ON queue(seq);
CREATE TABLE webhooks (webhook TEXT PRIMARY KEY, retry TEXT, delivered INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0, last_success_at REAL, lease_owner TEXT, lease_expires REAL);
CREATE TABLE attempts (id INTEGER PRIMARY KEY AUTOINCREMENT, webhook TEXT NOT NULL, delivery_id TEXT NOT NULL,
    event_ids TEXT NOT NULL, attempt INTEGER NOT NULL, started_at REAL NOT NULL, duration_ms REAL NOT NULL,
    outcome TEXT NOT NULL, status_code INTEGER, error TEXT, response_body TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '');
CREATE INDEX attempts_webhook ON attempts(webhook, id);
CREATE INDEX attempts_started ON attempts(started_at);
CREATE TABLE dead_letters (webhook TEXT NOT NULL, seq INTEGER NOT NULL, event_id TEXT NOT NULL,
    skipped_at REAL NOT NULL, attempt_id INTEGER);
"""


async def test_a_file_from_before_the_protocol_narrowed_opens_and_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_retry = {"held_qids": [1], "attempts": 3, "next_attempt_at": T0 + 30, "paused": None,
                 "last_failed_at": T0, "last_status_code": 503, "last_reason": "HTTP 503"}  # fmt: skip
    with _raw(path) as conn:
        conn.executescript(_OLD_SCHEMA)
        conn.execute("INSERT INTO events(event_id, received_at, body) VALUES ('id-1', ?, x'7b7d')", (T0,))
        conn.execute("INSERT INTO queue(webhook, seq) VALUES ('ns/a', 1)")
        conn.execute(
            "INSERT INTO webhooks VALUES ('ns/a', ?, 4, 3, ?, 'replica-1', ?)", (json.dumps(old_retry), T0, T0 + 60)
        )
    s = SqliteStore(path)
    await s.open()
    state = await s.lane_state("ns/a")
    assert state == LaneState(RetryState((1,), 3, T0 + 30, None, T0, 503, "HTTP 503"), Counters(4, 3, T0), 1)
    [queued] = await s.pending("ns/a")
    assert (queued.qid, queued.event_id, queued.body) == (1, "id-1", b"{}")
    await s.complete("ns/a", [1], record("ns/a", started_at=T0 + 40, duration_ms=0.0))
    await s.save_retry_state("ns/b", RetryState(paused="failed"))  # a new row in the old table
    assert await s.lane_state("ns/a") == LaneState(RetryState(), Counters(5, 3, T0 + 40), 0)
    assert await s.webhook_keys() == ["ns/a", "ns/b"]
    await s.close()


async def test_retry_state_written_by_a_newer_version_still_loads(store: SqliteStore) -> None:
    newer = {"held_qids": [4, 5], "attempts": 1, "paused": "failed", "jitter_seed": 7}
    await store._db.write(
        lambda conn: conn.execute("INSERT INTO webhooks(webhook, retry) VALUES ('ns/a', ?)", (json.dumps(newer),))
    )
    assert (await store.lane_state("ns/a")).retry == RetryState(held_qids=(4, 5), attempts=1, paused="failed")


# --- issue 13, finding 10: the store holds every event body and delivery log; only the operator may read it --------


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the common default, under which SQLite itself creates 0644 files
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("permissive_umask")
async def test_a_fresh_store_and_its_wal_and_shm_files_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "store.db"
    s = SqliteStore(path, clock=Clock())
    await s.open()
    try:
        await s.enqueue([ev(1, "ns/a")])
        files = (path, Path(f"{path}-wal"), Path(f"{path}-shm"))  # WAL mode: both exist while the store is open
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        await s.close()
    assert _mode(path) == 0o600


@pytest.mark.usefixtures("permissive_umask")
async def test_an_existing_world_readable_store_is_tightened_on_open(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = SqliteStore(path, clock=Clock())
    await first.open()
    await first.enqueue([ev(1, "ns/a")])
    await first.close()
    for p in (path, *(Path(f"{path}{suffix}") for suffix in ("-wal", "-shm"))):
        if p.exists():
            p.chmod(0o644)  # as an older version (or a plain sqlite3.connect) left it
    again = SqliteStore(path, clock=Clock())
    await again.open()
    try:
        await again.enqueue([ev(2, "ns/a")])
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert _mode(p) == 0o600, p.name
    finally:
        await again.close()
