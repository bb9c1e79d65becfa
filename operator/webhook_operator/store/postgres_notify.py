"""Cross-replica wake-up for the PostgreSQL store: NOTIFY on every commit that adds queue entries, LISTEN per replica.

A replica delivers only the webhooks it holds leases for, but every replica's intake accepts events for all of
them: without a signal, the owner would learn of a new entry only when it next polled. So every transaction that
adds queue entries (``enqueue``, ``requeue``, ``hand_over``: all go through the ordered group commit) ends with one
``pg_notify(CHANNEL, 'ns/a,ns/b')`` naming the webhooks it touched; PostgreSQL delivers it only if the transaction
commits, and delivers it to every listening session, the sender's own included (the engine ignores what it already
knows). A payload longer than ``MAX_PAYLOAD`` bytes (PostgreSQL refuses 8,000) becomes ``*``: "any webhook".

Notifications are a latency optimisation, never the only path: one lost in a dropped connection is made up for by
calling back with None ("look at everything") once the listener has reconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

CHANNEL = "webhook_operator_queues"
MAX_PAYLOAD = 7000  # bytes; PostgreSQL's limit is 8,000
ANY = "*"

Callback = Callable[[Sequence[str] | None], None]


def payload(keys: Iterable[str]) -> str:
    """The notification for ``keys``: comma-joined (webhook keys never contain a comma), or ``*`` if too long."""
    text = ",".join(sorted(set(keys)))
    return ANY if len(text.encode()) > MAX_PAYLOAD else text


def parse(text: str) -> list[str] | None:
    return None if text == ANY else [k for k in text.split(",") if k]


class QueueWatcher:
    """LISTENs on a connection of its own (a pooled one would be handed to other work) and calls the callbacks.

    A lost connection is noticed by asyncpg's termination callback, or by a ``SELECT 1`` every ``keepalive``
    seconds (a partition closes nothing); the watcher then reconnects with backoff (``min_backoff`` doubling up to
    ``max_backoff``) and calls back with None once, since notifications sent meanwhile are gone."""

    def __init__(self, connect: Callable[[], Any], *, keepalive: float = 15.0, min_backoff: float = 0.2,
                 max_backoff: float = 10.0) -> None:  # fmt: skip
        self._connect = connect  # () -> awaitable asyncpg connection
        self._callbacks: list[Callback] = []
        self._keepalive, self._min_backoff, self._max_backoff = keepalive, min_backoff, max_backoff
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._lost = asyncio.Event()
        self.reconnects = 0  # tests and metrics: how often the listener came back

    async def add(self, callback: Callback) -> None:
        """Register ``callback``; the first one starts listening. Returns once the LISTEN is in place (or, if the
        database cannot be reached now, once the reconnect loop has taken over)."""
        self._callbacks.append(callback)
        if self._task is None:
            try:
                await self._listen()
            except Exception as exc:
                log.warning("cannot listen for queue notifications yet (%s); retrying", type(exc).__name__)
                self._lost.set()
            self._task = asyncio.create_task(self._run(), name="store-queue-watcher")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._drop()
        self._callbacks.clear()

    async def _listen(self) -> None:
        conn = await self._connect()
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(lambda _conn: self._lost.set())
        self._lost.clear()
        self._conn = conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # nothing to flush on a listening connection; never wait on a dead peer

    async def _run(self) -> None:
        backoff = self._min_backoff
        while True:
            if not self._lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), self._keepalive)
                if not self._lost.is_set():
                    try:
                        await self._conn.execute("SELECT 1", timeout=self._keepalive)
                        continue
                    except Exception:
                        self._lost.set()
            await self._drop()
            try:
                await self._listen()
            except Exception as exc:
                log.info("queue listener reconnect failed (%s); next try in %.1fs", type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = self._min_backoff
            self.reconnects += 1
            self._call(None)  # what was sent while we were away is lost: look at everything

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, text: str) -> None:
        self._call(parse(text))

    def _call(self, keys: Sequence[str] | None) -> None:
        for callback in list(self._callbacks):
            try:
                callback(keys)
            except Exception:
                log.exception("queue notification callback failed")


async def connect_listener(dsn: str, connect_timeout: float) -> Any:
    """A plain asyncpg connection for LISTEN (no pool: the session must stay this watcher's)."""
    return await asyncpg.connect(dsn, timeout=connect_timeout)
