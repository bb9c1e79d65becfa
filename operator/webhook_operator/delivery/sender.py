"""Sending one HTTP request and classifying what happened.

The dispatcher depends on the ``Sender`` protocol only, so its ordering and retry logic can be unit-tested with an
in-memory fake, while the real ``AiohttpSender`` is tested against real loopback receivers.
"""

from __future__ import annotations

import dataclasses
import email.utils
import errno
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractResolver

from webhook_operator.delivery import http1
from webhook_operator.delivery.http1_pool import Http1Pool
from webhook_operator.delivery.http1_request import TargetCache, build_message
from webhook_operator.delivery.ssrf import AddressPolicy, AddressRefused, GuardedConnector


class OutcomeKind(StrEnum):
    SUCCESS = "success"  # 2xx
    RETRYABLE = "retryable"  # non-2xx (3xx included, never followed), timeout, connection error
    PERMANENT = "permanent"  # configuration that no retry can fix: refused address, unsupported scheme


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: Mapping[str, str]
    timeout: float
    #: PEM CA bundle to trust in addition to the system store, or None.
    ca_bundle: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    status_code: int | None
    duration_ms: float
    error: str | None = None
    #: The start of the response body (at most ``max_response_body`` characters), decoded leniently, for the
    #: delivery log.
    response_body: str = ""
    #: Seconds the receiver asked us to wait (Retry-After on 429/503), already bounded; None if absent.
    retry_after: float | None = None
    #: What was read past the cut (at most ``mask_margin`` bytes), never logged: only so that the attempt pipeline
    #: can mask a secret that straddles the cut before cutting. Non-empty means ``response_body`` was cut.
    response_more: str = ""

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.SUCCESS


class Sender(Protocol):
    async def send(self, request: Request) -> Outcome: ...

    async def close(self) -> None: ...


# --- the real sender --------------------------------------------------------------------------------------------------

DEFAULT_USER_AGENT = "webhook-operator"
_SSL_CACHE_SIZE = 256


def parse_retry_after(value: str | None, now: float, minimum: float, maximum: float) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP-date, RFC 9110 §10.2.3), clamped to
    ``[minimum, maximum]``; None when absent or unparseable. A date in the past clamps to ``minimum``."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(min(int(value), int(maximum) + 1))
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return min(max(seconds, minimum), maximum)


_ERRNO_TEXT = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
}


def _where(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connect_error(host: str, port: int | None, os_error: OSError) -> str:
    text = _ERRNO_TEXT.get(os_error.errno or -1) or os_error.strerror or str(os_error) or "connection failed"
    return f"{text} to {_where(host, port)}"


def classify_exception(exc: BaseException, timeout: float) -> tuple[OutcomeKind, str]:
    """The one place that turns a failed request into an outcome kind and a log line.

    Messages are built from chosen attributes only, never ``str(exc)`` of an exception that may carry the URL (which
    for Slack/Teams/Google Chat is itself a credential) or request headers (which carry tokens).
    """
    if isinstance(exc, AddressRefused):
        return OutcomeKind.PERMANENT, str(exc)
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return OutcomeKind.PERMANENT, "unsupported URL scheme (only http and https are allowed)"
    if isinstance(exc, aiohttp.InvalidURL):
        return OutcomeKind.PERMANENT, "invalid URL" + (f" ({exc.description})" if exc.description else "")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        detail = getattr(cert_error, "verify_message", None) or getattr(cert_error, "reason", None) or "invalid"
        return OutcomeKind.RETRYABLE, f"TLS certificate verification failed for {_where(exc.host, exc.port)}: {detail}"
    if isinstance(exc, aiohttp.ClientSSLError):
        detail = getattr(exc.os_error, "reason", None) or exc.strerror or type(exc.os_error).__name__
        return OutcomeKind.RETRYABLE, f"TLS error with {_where(exc.host, exc.port)}: {detail}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return OutcomeKind.RETRYABLE, f"timeout after {timeout:g} s while connecting"
    if isinstance(exc, TimeoutError):
        return OutcomeKind.RETRYABLE, f"timeout after {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return OutcomeKind.RETRYABLE, f"DNS resolution failed for {exc.host}: {exc.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return OutcomeKind.RETRYABLE, _connect_error(exc.host, exc.port, exc.os_error)
    if isinstance(exc, http1.ConnectFailed):
        return OutcomeKind.RETRYABLE, _connect_error(exc.host, exc.port, exc.os_error)
    if isinstance(exc, http1.DNSFailed):
        return OutcomeKind.RETRYABLE, f"DNS resolution failed for {exc.host}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError | http1.ServerDisconnected):
        return OutcomeKind.RETRYABLE, "server disconnected without a complete response"
    if isinstance(exc, aiohttp.ClientResponseError):
        return OutcomeKind.RETRYABLE, f"invalid HTTP response: {exc.message}"
    if isinstance(exc, http1.InvalidResponse):
        return OutcomeKind.RETRYABLE, f"invalid HTTP response: {exc.detail}"
    if isinstance(exc, aiohttp.ClientOSError):
        return OutcomeKind.RETRYABLE, f"connection error: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, aiohttp.ClientError):
        return OutcomeKind.RETRYABLE, f"request failed: {type(exc).__name__}"
    if isinstance(exc, ValueError):
        # aiohttp validates header names/values and the URL with ValueError; the text may quote the value.
        return OutcomeKind.PERMANENT, "invalid request: bad URL or header value"
    return OutcomeKind.RETRYABLE, f"request failed: {type(exc).__name__}"


def classify_response(status: int, reason: str | None, headers: Mapping[str, str], body: str, duration_ms: float, *,
                      now: float, retry_after_bounds: tuple[float, float] = (1.0, 3600.0)) -> Outcome:  # fmt: skip
    """The one place that turns an HTTP answer into an outcome: 2xx delivered; 3xx a failure naming the Location
    (never followed); every other status retryable, with Retry-After honoured on 429 and 503 only."""
    if 200 <= status < 300:
        return Outcome(OutcomeKind.SUCCESS, status, duration_ms, None, body)
    retry_after = None
    if status in (429, 503):
        retry_after = parse_retry_after(headers.get("Retry-After"), now, *retry_after_bounds)
    if 300 <= status < 400:
        error = f"HTTP {status}: redirect to {headers.get('Location')!r} not followed"
    else:
        error = f"HTTP {status}" + (f" {reason}" if reason else "")
    return Outcome(OutcomeKind.RETRYABLE, status, duration_ms, error, body, retry_after)


class AiohttpSender:
    """Sends requests through one long-lived aiohttp session whose connector enforces an ``AddressPolicy``.

    Choices, and why:

    * One session and connector for the process: connection pooling and keep-alive are where the throughput comes
      from; ``limit`` bounds sockets overall. Per receiver, a webhook's lane bounds its requests in flight (one with
      ordering webhook, ``maxInFlight`` with entity/none), and a request needs a connection only while it is in
      flight (idle ones are reused), so the lanes already cap connections per webhook; a per-host limit below
      ``maxInFlight`` (aiohttp's ``limit_per_host``, 0 = none by default) would only queue requests the spec allows.
      Created on first use because aiohttp binds it to the running loop.
    * ``trust_env=False``, no proxy, no redirects, no cookie jar: a proxy would hide the real destination from the
      SSRF guard, a redirect would let a receiver point us anywhere, and cookies from one tenant's receiver must not
      reach another's. A 3xx is a retryable failure that names the Location.
    * TLS: the system trust store by default; a per-webhook PEM bundle adds CAs (its SSLContext is cached per bundle,
      so pooled connections are reused); ``insecure_skip_verify`` is an explicit opt-in.
    * The first ``max_response_body`` characters of a response are kept for the delivery log. ``mask_margin`` more
      bytes are read and handed over as ``Outcome.response_more``, so that masking (in the attempt pipeline) sees
      a secret that straddles the cut, whole, before the cut is made; it is never logged. Up to
      ``max_drain_bytes`` more are read and discarded so the connection can be reused, beyond that it is closed
      instead of reading a huge body. Errors while reading the body do not change the outcome: the status decided it.
    * Plain ``http://`` requests go through a lean HTTP/1.1 client (``http1.py``, about half aiohttp's CPU per
      request) that resolves through the same ``GuardedConnector`` and yields the same outcomes; https and anything
      unusual (``http1_request.py`` says what) stay on aiohttp. Each of the two pools is capped at ``limit``
      connections; its idle connections close after 15 s, as aiohttp's. A ``limit_per_host`` (unused by the
      operator) keeps every request on aiohttp, which implements it.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: AbstractResolver | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        limit: int = 256,
        limit_per_host: int = 0,
        max_response_body: int = 4096,
        max_drain_bytes: int = 64 * 1024,
        mask_margin: int = 1024,
        retry_after_min: float = 1.0,
        retry_after_max: float = 3600.0,
        socket_factory: aiohttp.SocketFactoryType | None = None,
    ) -> None:
        """``resolver`` replaces DNS (tests map names to addresses; the caller closes it). ``socket_factory`` is
        aiohttp's public socket hook, handy to observe every connection attempt."""
        if retry_after_min > retry_after_max:
            raise ValueError("retry_after_min must not exceed retry_after_max")
        self._policy = policy
        self._resolver = resolver
        self._user_agent = user_agent
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._max_body = max_response_body
        self._max_drain = max_drain_bytes
        self._read_limit = max_response_body + mask_margin
        self._retry_after_bounds = (retry_after_min, retry_after_max)
        self._socket_factory = socket_factory
        self._session: aiohttp.ClientSession | None = None
        self._connector: GuardedConnector | None = None
        self._lean: Http1Pool | None = None
        self._targets = TargetCache()
        self._closed = False
        self._ssl_contexts: dict[str, ssl.SSLContext] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _guarded_connector(self) -> GuardedConnector:
        """The one connector both clients resolve through (SSRF guard, DNS cache); the session owns it once open."""
        if self._closed:
            raise RuntimeError("AiohttpSender is closed")
        if self._connector is None:
            self._connector = GuardedConnector(
                policy=self._policy,
                resolver=self._resolver,
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                socket_factory=self._socket_factory,
            )
        return self._connector

    def _open_lean(self) -> Http1Pool:
        self._lean = Http1Pool(
            self._guarded_connector(),
            limit=self._limit,
            keep=self._read_limit,
            drain=self._max_drain,
            socket_factory=self._socket_factory,
        )
        return self._lean

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=self._guarded_connector(),
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": self._user_agent},
        )
        return self._session

    def _ssl_for(self, request: Request) -> ssl.SSLContext | bool:
        if request.insecure_skip_verify:
            return False
        if not request.ca_bundle:
            return True
        context = self._ssl_contexts.get(request.ca_bundle)
        if context is None:
            context = ssl.create_default_context()
            context.load_verify_locations(cadata=request.ca_bundle)
            if len(self._ssl_contexts) >= _SSL_CACHE_SIZE:
                del self._ssl_contexts[next(iter(self._ssl_contexts))]
            self._ssl_contexts[request.ca_bundle] = context
        return context

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            if len(self._timeouts) >= 64:
                self._timeouts.clear()
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def _read_body(self, response: aiohttp.ClientResponse) -> tuple[str, str]:
        """(the kept start of the body, what was read past it for masking only)."""
        content = response.content
        kept = bytearray()
        try:
            while len(kept) < self._read_limit and not content.at_eof():
                chunk = await content.read(self._read_limit - len(kept))
                if not chunk:
                    break
                kept += chunk
            drained = 0
            while drained < self._max_drain and not content.at_eof():
                chunk = await content.read(self._max_drain - drained)
                if not chunk:
                    break
                drained += len(chunk)
        except (aiohttp.ClientError, TimeoutError):
            pass  # keep what arrived; release() closes a connection whose body was not read to the end
        text = kept.decode("utf-8", "replace")
        return text[: self._max_body], text[self._max_body :]

    async def send(self, request: Request) -> Outcome:
        started = time.perf_counter()
        if not request.timeout > 0:  # aiohttp reads a zero timeout as "no timeout at all"
            return Outcome(OutcomeKind.PERMANENT, None, 0.0, f"invalid timeout {request.timeout!r}: must be > 0")
        try:
            ssl_param = self._ssl_for(request)
        except (ssl.SSLError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            return Outcome(OutcomeKind.PERMANENT, None, 0.0, f"invalid CA bundle: {reason}")
        if self._closed:
            raise RuntimeError("AiohttpSender is closed")
        target = self._targets.get(request.url) if self._limit_per_host <= 0 else None
        if target is not None:
            try:
                message = build_message(target, request.headers, self._user_agent, request.body)
            except ValueError as exc:
                kind, error = classify_exception(exc, request.timeout)
                return Outcome(kind, None, (time.perf_counter() - started) * 1000, error)
            if message is not None:
                return await self._send_lean(target, message, request.timeout, started)
        session = self._session or self._open()
        try:
            async with session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                allow_redirects=False,
                timeout=self._timeout(request.timeout),
                ssl=ssl_param,
            ) as response:
                body, more = await self._read_body(response)
                return self._answer(response.status, response.reason, response.headers, body, more, started)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            kind, error = classify_exception(exc, request.timeout)
            return Outcome(kind, None, (time.perf_counter() - started) * 1000, error)

    async def _send_lean(self, target: http1.Target, message: bytes, seconds: float, started: float) -> Outcome:
        pool = self._lean or self._open_lean()
        try:
            response = await pool.request(target, message, seconds)
        except (aiohttp.ClientError, http1.Http1Error, TimeoutError, ValueError) as exc:  # as aiohttp's path
            kind, error = classify_exception(exc, seconds)
            return Outcome(kind, None, (time.perf_counter() - started) * 1000, error)
        text = response.body.decode("utf-8", "replace")
        body, more = text[: self._max_body], text[self._max_body :]
        return self._answer(response.status, response.reason, response.headers, body, more, started)

    def _answer(self, status: int, reason: str | None, headers: Mapping[str, str], body: str, more: str,
                started: float) -> Outcome:  # fmt: skip
        outcome = classify_response(
            status, reason, headers, body, (time.perf_counter() - started) * 1000,
            now=time.time(), retry_after_bounds=self._retry_after_bounds,
        )  # fmt: skip
        return dataclasses.replace(outcome, response_more=more) if more else outcome

    async def close(self) -> None:
        """Close the session and its pooled connections. Idempotent; the sender cannot be used afterwards."""
        self._closed = True
        if self._lean is not None:
            lean, self._lean = self._lean, None
            await lean.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()  # closes the connector too
        elif self._connector is not None:
            await self._connector.close()
        self._connector = None
