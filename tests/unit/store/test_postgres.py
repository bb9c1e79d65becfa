"""What only PostgreSQL has to prove beyond the store contract (which it passes like SQLite and the in-memory
store): several replicas share one database, so duplicates must be refused across processes, migrations must run
once when replicas start together, and the database going away must look like ``StoreUnavailable`` (503), never
like a half-accepted event. The DSN carries a password: no message may show it."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from controlplane.postgres import PostgresError, PostgresServer
from support import postgres
from webhook_operator.store import postgres as pg_module
from webhook_operator.store.base import (
    AttemptOutcome,
    AttemptQuery,
    RetryState,
    RoutedEvent,
    Store,
    StoreFull,
    StoreUnavailable,
)
from webhook_operator.store.postgres import PostgresStore
from webhook_operator.store.postgres_schema import MIGRATIONS, mask_dsn
from webhook_operator.store.sqlite import SqliteStore

from ._backends import Clock, ev, record

DELIVERED = AttemptOutcome.DELIVERED


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    yield postgres.fresh_database()


async def _opened(dsn: str, **kw: object) -> PostgresStore:
    store = PostgresStore(dsn, clock=Clock(), **kw)  # type: ignore[arg-type]
    await store.open()
    return store


async def test_two_replicas_enqueueing_the_same_ids_accept_each_exactly_once(dsn: str) -> None:
    """Two pools are two replicas: OpenMetadata's publisher posts every event once per server replica, so the
    same ids race in through different operators."""
    a, b = await _opened(dsn), await _opened(dsn)
    try:
        batches = [[ev(i, "ns/a"), ev(i + 1, "ns/a", "ns/b")] for i in range(0, 200, 2)]
        results = await asyncio.gather(
            *(store.enqueue(batch) for batch in batches for store in (a, b, a)),  # each batch three times
        )
        accepted = [e.event_id for r, batch in zip(results, [b for b in batches for _ in range(3)], strict=True)
                    for e, seq in zip(batch, r.seqs, strict=True) if seq is not None]  # fmt: skip
        assert sorted(accepted) == sorted(f"id-{i}" for i in range(200)), "every id accepted exactly once"
        pending = await b.pending("ns/a", limit=-1)
        assert sorted(e.event_id for e in pending) == sorted(f"id-{i}" for i in range(200))
        assert [e.qid for e in pending] == sorted(e.qid for e in pending)
        assert len(await a.pending("ns/b", limit=-1)) == 100
        queued = [e for r in results for e in r.queued.get("ns/a", [])]
        assert sorted(e.qid for e in queued) == [e.qid for e in pending], "what enqueue returned is what is queued"
    finally:
        await a.close()
        await b.close()


async def test_a_queue_paged_with_a_cursor_misses_nothing_while_two_replicas_enqueue(dsn: str) -> None:
    """qids come from a sequence, which hands them out at insert time, not commit time: without the queue lock a
    replica's transaction holding qid 10 could commit after another's qid 11, and a lane paging with
    ``after_qid=11`` would never see entry 10. The lock makes qid order commit order across replicas."""
    a, b, reader = await _opened(dsn), await _opened(dsn), await _opened(dsn)
    seen: list[str] = []
    done = asyncio.Event()

    async def write(store: PostgresStore, offset: int) -> None:
        for i in range(offset, offset + 120, 3):
            await store.enqueue([ev(i, "ns/a"), ev(i + 1, "ns/a"), ev(i + 2, "ns/a")])

    async def read() -> None:
        after = 0
        while True:
            finished = done.is_set()
            page = await reader.pending("ns/a", after_qid=after, limit=-1)
            seen.extend(e.event_id for e in page)
            after = page[-1].qid if page else after
            if finished and not page:
                return

    try:
        paging = asyncio.create_task(read())
        await asyncio.gather(*(write(s, n * 1000) for n, s in enumerate((a, b, a, b))))
        done.set()
        await paging
        assert len(seen) == 480 and len(set(seen)) == 480, f"{480 - len(set(seen))} entries paged past"
    finally:
        for store in (a, b, reader):
            await store.close()


async def test_what_enqueue_acknowledged_another_replica_reads_at_once(dsn: str) -> None:
    """Acknowledged means committed: a second pool (a second replica) sees the events as soon as enqueue returns."""
    a, b = await _opened(dsn), await _opened(dsn)
    try:
        for i in range(20):
            entry = (await a.enqueue([ev(i, "ns/a")])).queued["ns/a"][0]
            assert [e.event_id for e in await b.pending("ns/a", after_qid=entry.qid - 1)] == [f"id-{i}"]
    finally:
        await a.close()
        await b.close()


async def test_migrations_run_once_when_replicas_start_together() -> None:
    dsn = postgres.empty_database()
    stores = [PostgresStore(dsn) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert sorted(v for s in stores for v in s.migrated) == list(range(1, len(MIGRATIONS) + 1))
        conn = await asyncpg.connect(dsn)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
            assert versions == list(range(1, len(MIGRATIONS) + 1))
        finally:
            await conn.close()
        again = await _opened(dsn)
        assert again.migrated == []
        await again.close()
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_schema_newer_than_this_operator_refuses_to_open(dsn: str) -> None:
    store = await _opened(dsn)
    await store.close()
    await postgres.admin_in(postgres.database_of(dsn), "INSERT INTO schema_migrations(version) VALUES (99)")
    with pytest.raises(StoreUnavailable, match="schema version 99"):
        await _opened(dsn)


async def test_a_database_that_goes_away_is_unavailable_and_comes_back(dsn: str) -> None:
    """Connections refused and sessions killed (the database is down or failing over): every call raises
    StoreUnavailable (the intake answers 503), nothing is half-accepted, and the same store works again after."""
    store = await _opened(dsn, connect_timeout=2.0)
    database = postgres.database_of(dsn)
    try:
        before = await store.enqueue([ev(1, "ns/a")])
        await postgres.set_connectable(database, False)
        try:
            with pytest.raises(StoreUnavailable):
                await store.enqueue([ev(2, "ns/a")])
            with pytest.raises(StoreUnavailable):
                await store.lane_state("ns/a")
        finally:
            await postgres.set_connectable(database, True)
        assert [e.event_id for e in await store.pending("ns/a")] == ["id-1"]
        again = await store.enqueue([ev(2, "ns/a")])
        assert again.accepted == 1 and again.queued["ns/a"][0].qid > before.queued["ns/a"][0].qid
    finally:
        await store.close()


async def test_nul_characters_that_sqlite_stores_do_not_fail_a_write(dsn: str) -> None:
    """PostgreSQL text cannot hold NUL; an event id or an endpoint's response body may carry one. Before the
    store replaced it, such an enqueue or completion failed outright (a 500 for a well-formed post)."""
    store = await _opened(dsn)
    try:
        result = await store.enqueue([RoutedEvent("id-\x00-1", b"{}", ["ns/a"])])
        [entry] = result.queued["ns/a"]
        assert result.accepted == 1 and [e.event_id for e in await store.events_by_id(["id-\x00-1"])] == ["id-\ufffd-1"]
        assert (await store.enqueue([RoutedEvent("id-\x00-1", b"{}", ["ns/a"])])).duplicates == 1
        await store.complete(
            "ns/a", [entry.qid], record("ns/a", DELIVERED, "id-\x00-1", response_body="ok\x00", error="e\x00")
        )
        [line] = await store.attempts("ns/a", AttemptQuery())
        assert (line.response_body, line.error, list(line.event_ids)) == ("ok\ufffd", "e\ufffd", ["id-\ufffd-1"])
        assert [e.event_id for e in await store.routed_events("ns/a", ["id-\x00-1"])] == ["id-\ufffd-1"]
    finally:
        await store.close()


async def test_prune_works_in_chunks_and_counts_them_all(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prune deletes in short transactions (the queue lock is held per chunk, not for a week of events)."""
    monkeypatch.setattr(pg_module, "PRUNE_CHUNK", 2)
    clock = Clock()
    store = PostgresStore(dsn, clock=clock)
    await store.open()
    try:
        queued = (await store.enqueue([ev(i, "ns/a") for i in range(7)] + [ev(7)])).queued["ns/a"]
        await store.complete("ns/a", [e.qid for e in queued[:6]], record("ns/a", DELIVERED, started_at=clock.now))
        for i in range(5):
            await store.log(record("ns/a", DELIVERED, started_at=clock.now + i))
        await store.dead_letter("ns/a", [queued[6].qid], record("ns/a", AttemptOutcome.SKIPPED, "id-6"))
        assert await store.prune(clock.now + 100) == 8, "6 delivered, 1 routed nowhere, 1 whose dead letter aged out"
        assert await store.attempts("ns/a", AttemptQuery()) == [] and (await store.lane_state("ns/a")).dead_letters == 0
        assert await store.events_by_id([f"id-{i}" for i in range(8)]) == []
    finally:
        await store.close()


async def test_the_space_budget_is_one_exact_counter_shared_by_replicas(dsn: str) -> None:
    """Replicas share one budget: the byte counter moves in the same commits as the events (duplicates add
    nothing, prune subtracts what it deletes), so it always equals the sum it replaces, and one replica filling the
    store makes the other refuse too."""
    clock = Clock()
    a = PostgresStore(dsn, clock=clock, max_bytes=64 * 1024)
    b = PostgresStore(dsn, clock=clock, max_bytes=64 * 1024)
    await a.open()
    await b.open()

    async def summed() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(
                await conn.fetchval("SELECT COALESCE(SUM(octet_length(body) + octet_length(event_id)), 0) FROM events")
            )
        finally:
            await conn.close()

    try:
        body = b"x" * 10_000
        await asyncio.gather(*(s.enqueue([ev(i, "ns/a", body=body)]) for i in range(4) for s in (a, b)))  # dupes
        assert (await a.usage()).used_bytes == (await b.usage()).used_bytes == await summed() == 4 * (10_000 + 4)
        with pytest.raises(StoreFull):
            for i in range(4, 20):
                await a.enqueue([ev(i, "ns/a", body=body)])
        with pytest.raises(StoreFull):
            await b.enqueue([ev(100, "ns/a")])  # the other replica sees the same budget
        queued = await a.pending("ns/a", limit=-1)
        await a.complete("ns/a", [e.qid for e in queued], record("ns/a", DELIVERED, started_at=clock.now))
        clock.advance(10)
        assert await b.prune(clock.now) == len(queued)
        assert (await a.usage()).used_bytes == await summed() == 0
        assert (await b.enqueue([ev(100, "ns/a")])).accepted == 1
    finally:
        await a.close()
        await b.close()


async def test_hand_over_answers_as_sqlite_does(dsn: str, tmp_path: Path) -> None:
    """The fallback hand-over (issue 14) on both backends, side by side: same entries, same order (the held batch
    first, then the rest in queue order), same log lines and retry state."""

    async def scenario(store: Store) -> list[object]:
        await store.open()
        try:
            q = (await store.enqueue([ev(i, "ns/a") for i in range(1, 6)] + [ev(9, "ns/b")])).queued["ns/a"]
            held = RetryState(held_qids=(q[2].qid, q[3].qid), attempts=3, paused="retryLimitReached")
            await store.fail("ns/a", record("ns/a", AttemptOutcome.FAILED, "id-3", "id-4"), held)
            after = replace(held, held_qids=(), fallback="ns/b")
            moved = await store.hand_over(
                "ns/a", "ns/b", held.held_qids, record("ns/a", AttemptOutcome.SKIPPED, note="handed"),
                record("ns/b", AttemptOutcome.REDELIVERY_QUEUED, note="taken"), after,
            )  # fmt: skip
            return [
                [e.event_id for e in moved],
                [e.event_id for e in await store.pending("ns/b")],
                await store.pending("ns/a"),
                [(r.outcome, list(r.event_ids), r.note) for r in await store.attempts("ns/a", AttemptQuery())],
                [(r.outcome, list(r.event_ids), r.note) for r in await store.attempts("ns/b", AttemptQuery())],
                (await store.lane_state("ns/a")).retry,
                [e.qid for e in await store.pending("ns/b")] == sorted(e.qid for e in await store.pending("ns/b")),
            ]
        finally:
            await store.close()

    on_sqlite = await scenario(SqliteStore(tmp_path / "store.db", clock=Clock()))
    on_postgres = await scenario(PostgresStore(dsn, clock=Clock()))
    assert on_postgres == on_sqlite
    assert on_postgres[0] == ["id-3", "id-4", "id-1", "id-2", "id-5"] and on_postgres[-1] is True


@pytest.mark.parametrize("form", ["url", "keywords"])
async def test_the_dsn_password_never_appears_in_an_error(dsn: str, form: str) -> None:
    server = postgres.server()
    password = server.password
    wrong = "Wr0ng-" + password
    if form == "url":
        bad_password = dsn.replace(password, wrong)
        refused = dsn.replace(f":{server.port}/", ":1/")
    else:
        base = f"host=127.0.0.1 user={server.user} dbname={postgres.database_of(dsn)}"
        bad_password = f"{base} port={server.port} password={wrong}"
        refused = f"{base} port=1 password='{password}'"
    messages = []
    for target in (bad_password, refused):
        with pytest.raises(StoreUnavailable) as caught:
            await _opened(target, connect_timeout=5.0)
        printed = "".join(traceback.format_exception(caught.value))  # what a log line with exc_info would show
        assert password not in printed and wrong not in printed, printed
        messages.append(str(caught.value))
    assert all(password not in m and wrong not in m for m in messages), messages
    assert all("***" in m for m in messages), messages
    assert "password" in messages[0].lower() or "authentication" in messages[0].lower(), messages[0]


def test_mask_dsn_hides_the_password_in_every_form() -> None:
    assert mask_dsn("postgresql://u:p%40ss@h:5432/db?sslmode=require") == "postgresql://u:***@h:5432/db?sslmode=require"
    assert mask_dsn("postgres://u@h/db") == "postgres://u@h/db"
    assert mask_dsn("host=h user=u password='a b' dbname=d") == "host=h user=u password=*** dbname=d"
    assert mask_dsn("host=h password=secret") == "host=h password=***"
    assert "secret" not in mask_dsn("postgresql://h/db?password=secret")


def test_missing_server_binaries_fail_naming_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No skip when PostgreSQL is not installed: the suite fails and says what to install."""
    monkeypatch.setenv("WEBHOOK_OPERATOR_PG_BIN", str(tmp_path))
    with pytest.raises(PostgresError, match="apt-get install postgresql"):
        PostgresServer(tmp_path / "pg")
