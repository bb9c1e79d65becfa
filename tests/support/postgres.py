"""The test session's PostgreSQL: one real server (``controlplane.postgres``), started on first use, stopped when
the session ends (``tests/conftest.py``), with a fresh database per test so tests stay independent.

Started lazily rather than by a session fixture because the store contract builds its backends from plain
callables (``tests/unit/store/_backends.py``); a session whose tests never touch PostgreSQL never starts it. When
the binaries are missing the test fails with what to install: nothing here skips.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from controlplane.postgres import PostgresServer
from webhook_operator.store.postgres_schema import MIGRATIONS

T = TypeVar("T")

_lock = threading.Lock()
_server: PostgresServer | None = None


def server() -> PostgresServer:
    """The session's server, started on first call."""
    global _server
    with _lock:
        if _server is None:
            workdir = Path(tempfile.mkdtemp(prefix="wo-test-postgres-"))
            candidate = PostgresServer(workdir)
            try:
                candidate.start()
            except BaseException:
                candidate.stop()
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            _server = candidate
        return _server


def stop() -> None:
    """End of session: stop the server (if one was started) and remove its files."""
    global _server, _created
    with _lock:
        _created = False
        if _server is not None:
            _server.stop(immediate=True)  # its files are removed next: nothing to checkpoint
            shutil.rmtree(_server.workdir, ignore_errors=True)
            _server = None


def _in_thread(coro: Callable[[], Awaitable[T]]) -> T:
    """Run ``coro`` to completion on a loop of its own: callers may be sync code inside a running loop."""
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            box["value"] = asyncio.run(coro())  # type: ignore[arg-type]
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=main, name="postgres-admin")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def admin(sql: str, *args: Any) -> str:
    """One statement as the superuser, on the maintenance database."""
    conn = await asyncpg.connect(server().dsn("postgres"))
    try:
        return str(await conn.execute(sql, *args))
    finally:
        await conn.close()


def fresh_database() -> str:
    """A database with nothing in it, for one test; returns its DSN.

    Not a new database per test: CREATE DATABASE costs over a second here (it copies and fsyncs a template), which
    would double the store contract's run time. The one test database is instead emptied the way a new one would
    be: leftover sessions ended, per-database settings (a test's read-only outage) reset, and every store table
    truncated with its identity counters restarted. The schema stays, so ``open`` finds it migrated (the
    migration tests start from an empty schema with ``empty_database``)."""
    srv = server()
    _in_thread(_reset)
    return srv.dsn(TEST_DATABASE)


TEST_DATABASE = "wo_test"
_created = False


async def _reset() -> None:
    global _created
    if not _created:
        await admin(f"CREATE DATABASE {TEST_DATABASE} TEMPLATE template0")
        _created = True
        return
    conn = await asyncpg.connect(server().dsn(TEST_DATABASE))  # one connection: this runs before every test
    try:
        reset = f"ALTER DATABASE {TEST_DATABASE} RESET ALL"
        await conn.execute(reset)
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            TEST_DATABASE,
        )
        versions = None
        if await conn.fetchval("SELECT to_regclass('public.schema_migrations')"):
            versions = await conn.fetchval("SELECT array_agg(version ORDER BY version) FROM schema_migrations")
        if versions is not None and list(versions) != list(range(1, len(MIGRATIONS) + 1)):
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")  # a test left another version
        tables = [r[0] for r in await conn.fetch(
            "SELECT quote_ident(tablename) FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )]  # fmt: skip
        # DELETE, not TRUNCATE: a few rows, and no new files to create and fsync. The byte counter's one row
        # stays (the store never inserts it again), back at zero.
        sql = "".join(f"DELETE FROM {t};" for t in tables if t != "store_stats")  # noqa: S608
        if "store_stats" in tables:
            sql += "UPDATE store_stats SET event_bytes = 0;"
        if sql:
            await conn.execute(f"BEGIN;{sql}COMMIT")
    finally:
        await conn.close()


def empty_database() -> str:
    """The test database with no schema at all (not even ``schema_migrations``): what a new install starts from."""
    srv = server()

    async def drop() -> None:
        await _reset()
        conn = await asyncpg.connect(srv.dsn(TEST_DATABASE))
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        finally:
            await conn.close()

    _in_thread(drop)
    return srv.dsn(TEST_DATABASE)


def database_of(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


async def set_read_only(database: str, on: bool) -> None:
    """What a full disk or a failed-over primary looks like to a client: the database refuses writes. Its
    sessions are ended so the setting takes hold at once (clients reconnect and find it read-only)."""
    await admin(f"ALTER DATABASE {database} SET default_transaction_read_only = {'on' if on else 'off'}")
    await terminate_sessions(database)


async def terminate_sessions(database: str) -> None:
    await admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )


async def admin_in(database: str, sql: str, *args: Any) -> str:
    """One statement as the superuser, in ``database``."""
    conn = await asyncpg.connect(server().dsn(database))
    try:
        return str(await conn.execute(sql, *args))
    finally:
        await conn.close()


async def set_connectable(database: str, on: bool) -> None:
    """The database gone (``on`` False): new connections are refused and existing sessions are ended, as when the
    server is down or failing over; ``on`` True brings it back."""
    await admin(f"ALTER DATABASE {database} ALLOW_CONNECTIONS {'true' if on else 'false'}")
    if not on:
        await terminate_sessions(database)
