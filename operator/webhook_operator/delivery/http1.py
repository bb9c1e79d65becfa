"""A lean HTTP/1.1 keep-alive client for plain ``http://`` deliveries (issue 12).

aiohttp's ``ClientSession`` costs 230-400 µs of CPU per request on this workload (request/response objects, a
multidict per message, a ``StreamReader`` per body, a timer context and several futures per request); the operator
only ever sends one POST with a body it already holds and keeps a few KB of the answer. This client does exactly
that: one ``transport.write`` per request, the response parsed by llhttp (``httptools``, the parser uvicorn uses),
one future and one timer handle per request, no task. TLS and every unusual URL or header stay on aiohttp (see
``AiohttpSender`` and ``http1_request.py``), and both paths share one ``GuardedConnector``. This module is one
connection (``Connection``) and its outcome; ``http1_pool.py`` holds the pool:

* Addresses come from the connector's ``_resolve_host`` — the SSRF guard (``ssrf.py``), aiohttp's DNS cache and the
  configured resolver — and exactly those addresses are connected (through ``aiohappyeyeballs``, like aiohttp, with
  the same ``socket_factory``), so the guard's guarantee is the same: no second resolution, no rebinding window, no
  socket for a refused address.
* Outcomes match the aiohttp path: 1xx (but 101) skipped, the first ``keep`` body bytes kept, a failure after the
  response head keeps the status (the body is best effort), a failure before it is a lost connection, a timeout or
  an invalid response; a response head is bounded (``MAX_HEAD``), a body is read to ``keep + drain`` bytes at most.
* A connection is pooled per (host, port) only after a complete keep-alive response whose body stayed within
  ``keep + drain`` bytes and whose request was written out; anything else (timeout, parse error, oversized body,
  cancellation) closes it, and a close with request bytes still unsent aborts (a graceful close would wait for a
  peer that never reads, keeping the socket and the unsent bytes forever). Idle connections are closed after
  ``idle_timeout`` by one sweep timer; ``limit`` caps open connections (in use, idle and connecting); a request
  waits for a slot within its own timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

import httptools

if TYPE_CHECKING:
    from webhook_operator.delivery.http1_pool import Http1Pool

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
#: Bytes a response may take before its head is complete (status line, headers, any 1xx responses before it).
MAX_HEAD = 64 * 1024


class Http1Error(Exception):
    """A failure of the lean client; ``AiohttpSender`` classifies it (messages never carry the URL or headers)."""


class InvalidResponse(Http1Error):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ServerDisconnected(Http1Error):
    pass


class ConnectFailed(Http1Error):
    def __init__(self, host: str, port: int, os_error: OSError) -> None:
        super().__init__(host, port)
        self.host, self.port, self.os_error = host, port, os_error


class DNSFailed(Http1Error):
    def __init__(self, host: str, os_error: OSError) -> None:
        super().__init__(host)
        self.host, self.os_error = host, os_error


class Target(NamedTuple):
    """What the lean client needs from a URL, parsed once per URL string."""

    host: str  # as resolved (IP literal or name, no brackets)
    port: int
    request_line: str  # "POST <path?query> HTTP/1.1\r\n"
    host_header: str  # "<host>[:<port>]", the port only when it is not 80


class Response(NamedTuple):
    status: int
    reason: str
    #: "Retry-After" and "Location" only (the first of each), all ``classify_response`` reads.
    headers: Mapping[str, str]
    #: The first ``keep`` bytes of the body.
    body: bytearray


class Connection(asyncio.Protocol):
    """One pooled connection; ``_pool`` drives it with ``begin`` and reads the verdict from ``reusable``."""

    def __init__(self, pool: Http1Pool, key: tuple[str, int]) -> None:
        self._pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.reusable = False
        self.counted = True  # holds one of the pool's ``limit`` slots
        self.idle = False
        self.idle_since = 0.0
        self._status = 0
        self._reason = b""
        self._headers: dict[str, str] | None = None
        self._body = bytearray()
        self._seen = 0
        self._head_seen = 0
        self._head_done = False
        self._skip = False

    # --- driven by the pool ---

    def begin(self, waiter: asyncio.Future[Response], message: bytes, deadline: float) -> None:
        assert self.transport is not None
        self.reusable = False
        self._waiter = waiter
        self._status, self._reason, self._headers, self._body = 0, b"", None, bytearray()
        self._seen, self._head_seen, self._head_done, self._skip = 0, 0, False, False
        if self.transport.is_closing():  # lost between being picked and used
            self._fail(ServerDisconnected())
            return
        self._timer = self._pool.loop.call_at(deadline, self._on_timeout)
        self.transport.write(message)

    def close(self) -> None:
        """Close; an exchange still in progress fails as a lost connection. Idempotent."""
        self.reusable = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ServerDisconnected())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        if transport is not None:
            if transport.get_write_buffer_size():
                # A graceful close waits until the peer has read what is left, forever if it never reads: the
                # socket and the unsent body would outlive the request, uncounted by the pool's cap. The request
                # is over either way, so drop the rest (``test_a_receiver_that_never_reads_...``).
                transport.abort()
            else:
                transport.close()
        self._pool.forget(self)

    # --- outcome ---

    def _finish(self, reusable: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if waiter is not None and not waiter.done():
            headers = self._headers if self._headers is not None else _NO_HEADERS
            reason = self._reason.decode("utf-8", "surrogateescape")
            waiter.set_result(Response(self._status, reason, headers, self._body))
        if reusable:
            self.reusable = True
        else:
            self.close()

    def _fail(self, exc: Exception) -> None:
        """Before the response head: the request failed. After it: the status decided (as on the aiohttp path,
        errors while reading the body do not change the outcome), the connection is not reusable."""
        if self._head_done:
            self._finish(False)
            return
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _on_timeout(self) -> None:
        self._timer = None
        self._fail(TimeoutError())

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for on an idle connection: never reuse it
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidResponse("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(InvalidResponse(str(exc) or type(exc).__name__))
        else:
            if not self._head_done and self._waiter is not None:
                # httptools gathers a header in memory until it ends: bound the head (aiohttp: 8190 per field).
                self._head_seen += len(data)
                if self._head_seen > MAX_HEAD:
                    self._fail(InvalidResponse(f"response head larger than {MAX_HEAD} bytes"))

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self._waiter is not None:
            self._fail(ServerDisconnected())
        self._pool.forget(self)

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        if self._waiter is None:  # a second response nobody asked for (pipelined junk)
            self.close()

    def on_status(self, status: bytes) -> None:
        self._reason += status  # may arrive in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._skip:
            return
        lowered = name.lower()
        if lowered == b"retry-after" or lowered == b"location":
            headers = self._headers
            if headers is None:
                headers = self._headers = {}
            key = "Retry-After" if lowered == b"retry-after" else "Location"
            headers.setdefault(key, value.decode("utf-8", "surrogateescape"))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # 100 Continue & co.: the real answer follows
            self._skip = True
            return
        self._status = status
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        if self._waiter is None or self._skip:
            return
        kept = self._body
        room = self._pool.keep - len(kept)
        if room > 0:
            kept += body[:room]
        self._seen += len(body)
        if self._seen > self._pool.keep + self._pool.drain:
            self._finish(False)  # far too long to drain: close instead of reading on

    def on_message_complete(self) -> None:
        if self._skip:
            self._skip = False
            self._reason, self._headers = b"", None
            return
        if self._waiter is not None:
            self._finish(self._parser.should_keep_alive())
