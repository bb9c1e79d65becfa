"""PostgreSQL schema, migrations, row mapping and error mapping for ``store.postgres``.

The schema is versioned: ``MIGRATIONS[n - 1]`` turns version ``n - 1`` into version ``n``, and ``schema_migrations``
records which have run. Every operator replica applies what is missing at start, under a session advisory lock, so
two replicas starting together never run a migration twice and a replica never sees a half-migrated schema. A
migration, once released, is never edited: a change is a new entry.

Errors are mapped here too, because "the database is unreachable" (``StoreUnavailable``: the intake answers 503)
must be told apart from a bug in our SQL, and because a DSN's password must never reach a log line or a message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from webhook_operator.store.base import AttemptOutcome, AttemptRecord, QueuedEvent, StoreUnavailable
from webhook_operator.store.unrouted import POSTGRES_MIGRATION as UNROUTED_MIGRATION

#: Key of the session advisory lock held while migrations run (any constant; "wo-migr" in ASCII).
MIGRATION_LOCK = 0x776F2D6D696772
#: Key of the transaction advisory lock every transaction that creates queue entries takes first: qids are then
#: handed out in commit order across all replicas, so a reader paging a queue by ``after_qid`` never has a
#: smaller qid commit behind its cursor.
QUEUE_LOCK = 0x776F2D7175657565

MIGRATIONS: tuple[str, ...] = (
    # 1: the schema of SqliteStore, in PostgreSQL types. Times are epoch seconds (double precision) as in SQLite,
    # so both backends answer the same queries with the same numbers.
    """
    CREATE TABLE events (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        received_at DOUBLE PRECISION NOT NULL,
        body BYTEA NOT NULL
    );
    CREATE INDEX events_received_at ON events(received_at);
    CREATE TABLE queue (
        qid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        webhook TEXT NOT NULL,
        seq BIGINT NOT NULL
    );
    CREATE INDEX queue_webhook ON queue(webhook, qid);
    CREATE INDEX queue_seq ON queue(seq);
    CREATE TABLE webhooks (
        webhook TEXT PRIMARY KEY,
        retry JSONB,
        delivered BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0,
        last_success_at DOUBLE PRECISION
    );
    CREATE TABLE attempts (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        webhook TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        event_ids TEXT[] NOT NULL,
        attempt INTEGER NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        duration_ms DOUBLE PRECISION NOT NULL,
        outcome TEXT NOT NULL,
        status_code INTEGER,
        error TEXT,
        response_body TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX attempts_webhook ON attempts(webhook, id);
    CREATE INDEX attempts_started ON attempts(started_at);
    CREATE TABLE dead_letters (
        webhook TEXT NOT NULL,
        seq BIGINT NOT NULL,
        event_id TEXT NOT NULL,
        skipped_at DOUBLE PRECISION NOT NULL,
        attempt_id BIGINT
    );
    CREATE INDEX dead_letters_webhook ON dead_letters(webhook, skipped_at);
    CREATE INDEX dead_letters_seq ON dead_letters(seq);
    CREATE INDEX dead_letters_skipped ON dead_letters(skipped_at);
    -- Live event bytes (ids and bodies), kept by the transactions that insert and delete events: the space
    -- budget and /metrics read one row instead of summing the events table.
    CREATE TABLE store_stats (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        event_bytes BIGINT NOT NULL
    );
    INSERT INTO store_stats(id, event_bytes) VALUES (1, 0);
    """,
    # 2: work sharing between replicas (issue 15; ``store.postgres_leases``). Times are the database server's
    # clock. ``token`` is UNIQUE on purpose: that makes it a key column, so a takeover (which sets a new token)
    # takes a FOR UPDATE row lock and waits for the FOR KEY SHARE lock a fenced lane write holds on the row until
    # it commits, while a renewal or a release (which leave the token alone) never waits for lane writes.
    """
    CREATE TABLE replicas (
        replica_id TEXT PRIMARY KEY,
        heartbeat_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        address TEXT
    );
    CREATE SEQUENCE lease_tokens;
    CREATE TABLE leases (
        webhook TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        token BIGINT NOT NULL UNIQUE,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX leases_owner ON leases(owner);
    -- The fence check of a one-statement lane write (``postgres_leases.fenced_sql``): lock the lease row FOR KEY
    -- SHARE until commit if it is still the writer's and live, else fail the whole statement (SQLSTATE WO001).
    CREATE FUNCTION webhook_operator_fence(p_webhook TEXT, p_owner TEXT, p_token BIGINT) RETURNS BOOLEAN
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM 1 FROM leases WHERE webhook = p_webhook AND owner = p_owner AND token = p_token
            AND expires_at > extract(epoch from clock_timestamp())::float8 FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'lease of % lost', p_webhook USING ERRCODE = 'WO001';
        END IF;
        RETURN TRUE;
    END $$;
    """,
    # 3: events accepted unrouted while the Webhook list was not known (issue 15, intake availability).
    UNROUTED_MIGRATION,
)

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


async def migrate(conn: Any) -> list[int]:
    """Apply the missing migrations, each in its own transaction, under the migration lock; returns the versions
    this call applied (empty when another replica had done it)."""
    applied: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK, timeout=600)  # another replica migrating
    try:
        await conn.execute(MIGRATIONS_TABLE)
        done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        newest = max(done, default=0)
        if newest > len(MIGRATIONS):
            raise StoreUnavailable(
                f"the PostgreSQL store has schema version {newest}, newer than this operator knows "
                f"({len(MIGRATIONS)}): run a newer operator version"
            )
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations(version) VALUES ($1)", version)
            applied.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


# -- DSN masking -----------------------------------------------------------------------------------------------

_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def dsn_password(dsn: str) -> str | None:
    """The password a DSN carries (URL or ``key=value`` form), to scrub from messages; None when it has none."""
    match = _KEYWORD_PASSWORD.search(dsn)
    if match:
        return match.group(2).strip("'")
    try:
        password = urlsplit(dsn).password
    except ValueError:
        return None
    return unquote(password) if password else None


def mask_dsn(dsn: str) -> str:
    """The DSN as it may be shown: the password replaced by ``***`` (URL userinfo, ``password=`` keyword and a
    ``password`` query parameter alike)."""
    masked = _KEYWORD_PASSWORD.sub(r"\1***", dsn)
    try:
        parts = urlsplit(masked)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            masked = urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    except ValueError:
        return "(unparseable DSN)"
    return masked


def scrub(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced (error messages of the driver and the server)."""
    if not secret:
        return text
    return text.replace(secret, "***").replace(quote(secret, safe=""), "***")


# -- error mapping ---------------------------------------------------------------------------------------------

#: SQLSTATE classes that mean "the database cannot take this now", not "the statement is wrong": connection
#: exceptions (08), insufficient resources such as a full disk (53), operator intervention such as a shutdown or a
#: terminated session (57), system errors (58); plus read-only transactions (25006: a standby or a database set
#: read-only).
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | asyncpg.exceptions.InterfaceError | asyncpg.InternalClientError):
        return True  # refused, reset, timed out, or a connection/pool that was closed or broken under us
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state.startswith(_UNAVAILABLE_CLASSES) or state == "25006"
    return False


def unavailable(exc: BaseException, what: str, password: str | None) -> StoreUnavailable:
    """A ``StoreUnavailable`` for ``exc`` whose message cannot carry the password."""
    return StoreUnavailable(scrub(f"PostgreSQL {what} failed: {type(exc).__name__}: {exc}", password))


# -- rows ------------------------------------------------------------------------------------------------------

INSERT_ATTEMPT = (
    "INSERT INTO attempts(webhook, delivery_id, event_ids, attempt, started_at, duration_ms, outcome, status_code,"
    " error, response_body, note) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) RETURNING id"
)
EVENT_COLUMNS = "e.seq, e.event_id, e.body, e.received_at"
ATTEMPT_COLUMNS = (
    "id, webhook, delivery_id, event_ids, attempt, started_at, duration_ms, outcome, status_code, error,"
    " response_body, note"
)


def text(value: str) -> str:
    """PostgreSQL text cannot hold NUL (SQLite's can): an event id or a response body with one would fail the
    whole write. NUL becomes U+FFFD, as a decoder marks what it cannot show."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def texts(values: Sequence[str]) -> list[str]:
    return [text(v) for v in values]


def _opt(value: str | None) -> str | None:
    return None if value is None else text(value)


def record_row(record: AttemptRecord) -> tuple[Any, ...]:
    return (record.webhook, text(record.delivery_id), texts(record.event_ids), record.attempt, record.started_at,
            record.duration_ms, record.outcome.value, record.status_code, _opt(record.error),
            text(record.response_body), text(record.note))  # fmt: skip


def attempt_from_row(r: Sequence[Any]) -> AttemptRecord:
    return AttemptRecord(
        id=r[0], webhook=r[1], delivery_id=r[2], event_ids=list(r[3]), attempt=r[4], started_at=r[5],
        duration_ms=r[6], outcome=AttemptOutcome(r[7]), status_code=r[8], error=r[9], response_body=r[10],
        note=r[11],
    )  # fmt: skip


def event_from_row(r: Sequence[Any], qid: int = 0) -> QueuedEvent:
    """``(seq, event_id, body, received_at)``; ``qid`` 0 for an event read outside a queue."""
    return QueuedEvent(qid, r[0], r[1], bytes(r[2]), r[3])
