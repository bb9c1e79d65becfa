"""The connection pool of the lean HTTP/1.1 client (see ``http1.py`` for why it exists and what it guarantees).

Per (host, port) a stack of idle connections (the most recently used first: it is the least likely to have been
closed by the peer), one sweep timer for the idle timeout, a FIFO of requests waiting for one of ``limit`` slots.
New connections resolve through the ``GuardedConnector`` (the SSRF guard) and connect exactly what it returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohappyeyeballs
import aiohttp

from webhook_operator.delivery.http1 import ConnectFailed, Connection, DNSFailed, Response, Target
from webhook_operator.delivery.ssrf import GuardedConnector


class Http1Pool:
    """Keep-alive connections per (host, port), at most ``limit`` open (0 = no cap)."""

    def __init__(
        self,
        connector: GuardedConnector,
        *,
        limit: int,
        keep: int,
        drain: int,
        socket_factory: Callable[[Any], socket.socket] | None = None,
        idle_timeout: float = 15.0,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._connector = connector
        self._limit = limit
        self.keep = keep
        self.drain = drain
        self._socket_factory = socket_factory
        self._idle_timeout = idle_timeout
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self._all: set[Connection] = set()
        self._open = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def request(self, target: Target, message: bytes, seconds: float) -> Response:
        """Send ``message`` (head and body) and wait for the response, all within ``seconds``."""
        loop = self.loop
        deadline = loop.time() + seconds
        key = (target.host, target.port)
        conn = self._take_idle(key)
        if conn is None:
            conn = await self._connect(target, key, deadline)
        waiter: asyncio.Future[Response] = loop.create_future()
        conn.begin(waiter, message, deadline)
        try:
            return await waiter
        finally:
            self._release(conn)

    def _take_idle(self, key: tuple[str, int]) -> Connection | None:
        stack = self._idle.get(key)
        while stack:
            conn = stack.pop()
            conn.idle = False
            if not stack:
                del self._idle[key]
            assert conn.transport is not None
            if conn.reusable and not conn.transport.is_closing():
                return conn
            conn.close()
        return None

    def _release(self, conn: Connection) -> None:
        transport = conn.transport
        if not conn.reusable or self._closed or transport is None or transport.is_closing():
            conn.close()
            return
        if transport.get_write_buffer_size():  # answered before reading the whole request (aiohttp: not pooled
            conn.close()  # until written): the next request would queue behind bytes the peer may never read
            return
        conn.idle = True
        conn.idle_since = self.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweep is None:
            self._sweep = self.loop.call_at(conn.idle_since + self._idle_timeout, self._run_sweep)
        self._wake_one()

    def forget(self, conn: Connection) -> None:
        """A connection is closing: give its slot back (idempotent)."""
        if conn.idle:
            conn.idle = False
            stack = self._idle[conn.key]
            stack.remove(conn)
            if not stack:
                del self._idle[conn.key]
        if conn.counted:
            conn.counted = False
            self._open -= 1
            self._all.discard(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _run_sweep(self) -> None:
        self._sweep = None
        cutoff = self.loop.time() - self._idle_timeout
        oldest: float | None = None
        for stack in list(self._idle.values()):
            while stack and stack[0].idle_since <= cutoff:
                stack[0].close()  # removes it from the stack
            if stack and (oldest is None or stack[0].idle_since < oldest):
                oldest = stack[0].idle_since
        if oldest is not None:
            self._sweep = self.loop.call_at(oldest + self._idle_timeout, self._run_sweep)

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection (to any host) to make room; False if there is none."""
        oldest: Connection | None = None
        for stack in self._idle.values():
            if oldest is None or stack[0].idle_since < oldest.idle_since:
                oldest = stack[0]
        if oldest is None:
            return False
        oldest.close()
        return True

    async def _connect(self, target: Target, key: tuple[str, int], deadline: float) -> Connection:
        async with asyncio.timeout_at(deadline):
            while True:
                if self._closed:
                    raise aiohttp.ClientConnectionError("Connector is closed")  # as aiohttp says it
                conn = self._take_idle(key)
                if conn is not None:
                    return conn
                if self._limit <= 0 or self._open < self._limit or self._evict_idle():
                    break
                slot: asyncio.Future[None] = self.loop.create_future()
                self._slot_waiters.append(slot)
                try:
                    await slot
                except BaseException:
                    if slot.done() and not slot.cancelled():
                        self._wake_one()  # we were handed a slot we will not use: pass it on
                    else:  # _wake_one or close() may have dropped it already (it skips cancelled waiters)
                        with contextlib.suppress(ValueError):
                            self._slot_waiters.remove(slot)
                    raise
            conn = Connection(self, key)
            self._open += 1
            self._all.add(conn)
            try:
                await self._open_socket(conn, target)
                if self._closed:
                    raise aiohttp.ClientConnectionError("Connector is closed")
            except BaseException:
                conn.close()
                raise
            return conn

    async def _open_socket(self, conn: Connection, target: Target) -> None:
        connector = self._connector
        try:
            hosts = await connector._resolve_host(target.host, target.port)  # the SSRF guard
        except TimeoutError:
            raise
        except OSError as exc:
            raise DNSFailed(target.host, exc) from exc
        addr_infos = connector._convert_hosts_to_addr_infos(hosts)
        try:
            sock = await aiohappyeyeballs.start_connection(
                addr_infos,
                happy_eyeballs_delay=connector._happy_eyeballs_delay,
                interleave=connector._interleave,
                loop=self.loop,
                socket_factory=self._socket_factory,
            )
        except TimeoutError:
            raise
        except OSError as exc:
            raise ConnectFailed(target.host, target.port, exc) from exc
        try:  # the transport sets TCP_NODELAY itself
            await self.loop.create_connection(lambda: conn, sock=sock)
        except OSError as exc:  # e.g. TCP_NODELAY refused on a connection already reset (macOS): as aiohttp's
            sock.close()  # _wrap_create_connection, a connection error, not an exception out of send()
            raise ConnectFailed(target.host, target.port, exc) from exc
        except BaseException:
            sock.close()
            raise

    async def close(self) -> None:
        """Close every connection and refuse new requests. Idempotent."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._all):
            conn.close()
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # they wake, see the pool closed, and raise
