"""The intake's aiohttp application: ``POST /api/v1/events`` and ``GET /api/v1/openapi.json``.

The contract with a sender is all-or-nothing: 202 means every event in the post is committed to the store (the
submitter returned), any other status means nothing was taken and the whole post may be sent again. Checks run
cheapest first and before the body is read whenever they can (token, Content-Type, Content-Length, readiness), so a
refused sender does not get to upload megabytes first; with ``Expect: 100-continue`` (curl sends it for large bodies)
those checks run before the client is told to continue.

The same application hosts the operations API later: ``add_routes`` mounts more routes, each with its own
``Authenticator`` (or an explicit ``auth=None`` for public routes), and the JSON error middleware applies to all of
them, so every error anywhere on the port has the body ``{"error": "...", "status": n}``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path

from aiohttp import ClientPayloadError, web
from aiohttp.http import HttpProcessingError, HttpVersion11

from webhook_operator.intake.auth import (
    Authenticator,
    BearerAuth,
    Handler,
    SignatureVerifier,
    TokenSource,
    check_signature_format,
    requires,
)
from webhook_operator.intake.errors import IntakeError
from webhook_operator.intake.openapi import EVENTS_PATH, OPENAPI_PATH, RETRY_AFTER_SECONDS, render_openapi
from webhook_operator.intake.parsing import DEFAULT_MAX_EVENTS, ParsedPost, parse_events
from webhook_operator.intake.protocol_log import protocol_logger
from webhook_operator.intake.submitter import Submitter
from webhook_operator.store.base import StoreFull, StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 8 * 1024 * 1024
#: Bodies above this are parsed in a worker thread so that health probes and small posts keep being answered.
_PARSE_INLINE_LIMIT = 256 * 1024
_LINGER_SECONDS = 2.0
#: Headers of aiohttp's own HTTP errors worth keeping in the JSON version of the response.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


def error_response(exc: IntakeError) -> web.Response:
    """The JSON error answer for ``exc``; closes the connection when the request body was left unread."""
    response = web.json_response(exc.body(), status=exc.status, headers=exc.headers)
    if exc.close:
        response.force_close()
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every refusal (ours and aiohttp's 404/405/...) into ``{"error": ..., "status": ...}``."""
    try:
        return await handler(request)
    except IntakeError as exc:
        level = logging.WARNING if exc.status >= 500 else logging.DEBUG
        log.log(level, "%s %s from %s: %d %s", request.method, request.path, request.remote, exc.status, exc.message)
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        message = f"{exc.reason}: {request.method} {request.path}"
        return error_response(IntakeError(exc.status, message, headers=headers))
    except ConnectionResetError:  # the client went away; nobody to answer
        raise
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return error_response(IntakeError(500, "internal error (logged by the operator)"))


def _unavailable(message: str) -> IntakeError:
    return IntakeError(503, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def is_json_content_type(mimetype: str) -> bool:
    """``application/json`` or any ``application/<x>+json`` (aiohttp has already lower-cased and stripped it)."""
    kind, _, subtype = mimetype.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


class EventIntake:
    """``POST /api/v1/events``: authenticate, check, read (capped), verify, parse, submit, answer."""

    def __init__(self, submitter: Submitter, auth: Authenticator, *, verifier: SignatureVerifier | None,
                 max_body: int, max_events: int, ready: Callable[[], bool]) -> None:  # fmt: skip
        if max_body < 1 or max_events < 1:
            raise ValueError("max_body and max_events must be at least 1")
        self.submitter = submitter
        self.auth = auth
        self.verifier = verifier
        self.max_body = max_body
        self.max_events = max_events
        self.ready = ready

    def precheck(self, request: web.Request) -> None:
        """Checks that need no body: 415, 413 by Content-Length, 400 for a malformed signature header (no secret),
        503 while not ready."""
        if not is_json_content_type(request.content_type):
            given = request.headers.get("Content-Type", "none")
            raise IntakeError(415, f"Content-Type must be application/json, not {given}")
        charset = request.charset
        if charset is not None and charset.lower().replace("-", "") != "utf8":
            raise IntakeError(415, f"charset must be UTF-8, not {charset}")
        length = request.content_length
        if length is not None and length > self.max_body:
            raise IntakeError(413, f"body of {length} bytes is larger than the limit of {self.max_body}", close=True)
        if self.verifier is None:  # with a secret, verify() judges the signature headers (401)
            check_signature_format(request.headers)
        if not self.ready():
            raise _unavailable("not ready: the operator is still opening its event store; retry shortly")

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse before the client uploads, or tell it to go on."""
        try:
            await self.auth.authenticate(request)
            self.precheck(request)
            if request.headers.get("Expect", "").lower() != "100-continue":
                raise IntakeError(417, "only Expect: 100-continue is supported")
        except IntakeError as exc:
            exc.close = True  # the body was never read: do not drain it to keep the connection
            return error_response(exc)
        if request.version == HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None

    async def read_body(self, request: web.Request) -> bytes:
        """The body, never more than ``max_body`` bytes of it (chunked bodies have no Content-Length to trust).

        Reads whatever has arrived, piece by piece (``readany``; each piece is at most the stream's buffer), and
        counts before keeping: a single-event post is one piece, returned without a copy (issue 12)."""
        content = request.content
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := await content.readany():
                size += len(chunk)
                if size > self.max_body:
                    raise IntakeError(413, f"body is larger than the limit of {self.max_body} bytes", close=True)
                chunks.append(chunk)
        except (ClientPayloadError, HttpProcessingError) as exc:  # truncated or malformed chunked body
            raise IntakeError(400, f"body could not be read: {exc}", close=True) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def parse(self, body: bytes) -> ParsedPost:
        if len(body) <= _PARSE_INLINE_LIMIT:
            return parse_events(body, max_events=self.max_events)
        return await asyncio.to_thread(parse_events, body, max_events=self.max_events)

    async def post(self, request: web.Request) -> web.Response:
        await self.auth.authenticate(request)
        self.precheck(request)
        body = await self.read_body(request)
        if self.verifier is not None:
            self.verifier.verify(request.headers, body)
        # Inline for the usual small post (no coroutine around it); large ones in a thread, see ``parse``.
        parsed = parse_events(body, max_events=self.max_events) if len(body) <= _PARSE_INLINE_LIMIT else (
            await self.parse(body))  # fmt: skip
        if parsed.ping:
            log.info("destination test message from %s accepted (nothing stored)", request.remote)
            return web.json_response({"accepted": 0, "duplicates": 0, "queued": 0}, status=200)
        try:
            result = await self.submitter.submit(parsed.events, parsed.bodies)
        except StoreFull as exc:  # over --store-max-bytes: refused before the volume is full (issue 13, finding 4)
            log.error("refusing %d event(s): %s", len(parsed.events), exc)
            raise IntakeError(507, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except StoreUnavailable as exc:
            log.error("refusing %d event(s): store unavailable: %s", len(parsed.events), exc)
            raise _unavailable("event store unavailable: nothing was accepted; retry shortly") from None
        return accepted_response(result.accepted, result.duplicates, result.queued)


def accepted_response(accepted: int, duplicates: int, queued: int) -> web.Response:
    """The 202: the bytes and headers ``web.json_response`` writes for these counts, without building a dict and
    running ``json.dumps`` for every post (issue 12: ~2.9 µs instead of ~6.5 µs, once per post)."""
    text = f'{{"accepted": {int(accepted)}, "duplicates": {int(duplicates)}, "queued": {int(queued)}}}'
    return web.Response(text=text, status=202, content_type="application/json")


def build_app(
    submitter: Submitter,
    *,
    tokens: TokenSource | None,
    allow_anonymous: bool,
    hmac_secret: bytes | None,
    max_body: int = DEFAULT_MAX_BODY,
    max_events: int = DEFAULT_MAX_EVENTS,
    ready: Callable[[], bool] = lambda: True,
) -> web.Application:
    """The intake application. Security settings have no defaults on purpose: every caller decides them.

    Raises ValueError when neither tokens nor anonymous mode is configured, or the HMAC secret is empty.
    """
    auth = BearerAuth(tokens, allow_anonymous=allow_anonymous)
    verifier = SignatureVerifier(hmac_secret) if hmac_secret is not None else None
    intake = EventIntake(submitter, auth, verifier=verifier, max_body=max_body, max_events=max_events, ready=ready)
    # After a refusal sent before the body was read (413, 401 on 100-continue), aiohttp keeps reading and discarding
    # the upload for ``lingering_time`` so the client sees the answer instead of a reset; bound that waste to 2 s.
    # ``logger``: a request aiohttp cannot parse (a NUL in a header, a bad chunk size) is the client's mistake, logged
    # in one line instead of an ERROR with a traceback that any client could write into the log (issue 13, item 11).
    app = web.Application(middlewares=[json_errors],
                          handler_args={"lingering_time": _LINGER_SECONDS, "logger": protocol_logger()})  # fmt: skip
    # Auth runs inside EventIntake.post (not via requires()) because the 100-continue handler needs it too.
    app.router.add_post(EVENTS_PATH, intake.post, expect_handler=intake.expect)
    document = render_openapi()

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=document, content_type="application/json")

    add_routes(app, [web.get(OPENAPI_PATH, openapi)], auth=None)
    return app


class ServerTLS:
    """The listener's TLS context: certificate chain and key (PEM), TLS 1.2 or later, Python's default ciphers.

    Loaded at start-up; an unreadable or mismatched pair raises ValueError naming the flags, so a broken Secret stops
    the operator at once instead of serving plain HTTP or failing every handshake later. ``reload_if_changed`` (the
    service calls it periodically) loads new files into the *same* context, which the running server keeps using, so
    new connections get a rotated certificate without a restart. A Secret volume rotates by swapping a symlink, which
    changes the inode; the new pair is tried on a scratch context first, and a broken one is logged and ignored
    (the old certificate stays) until the files change again.
    """

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file, self.key_file = Path(cert_file), Path(key_file)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp = self._current_stamp()
        try:
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--tls-cert-file {cert_file} / --tls-key-file {key_file} unusable: {exc}") from None

    def _current_stamp(self) -> tuple[tuple[int, int, int, int], ...] | None:
        try:
            stats = [path.stat() for path in (self.cert_file, self.key_file)]
        except OSError:
            return None
        return tuple((st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino) for st in stats)

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed since the last look; True when the new pair is now served."""
        stamp = self._current_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS certificate %s / key %s changed but are unusable (%s); still serving the previous one",
                      self.cert_file, self.key_file, exc)  # fmt: skip
            return False
        self.context.load_cert_chain(self.cert_file, self.key_file)
        log.info("TLS certificate reloaded from %s", self.cert_file)
        return True


def add_routes(app: web.Application, routes: Iterable[web.RouteDef], *, auth: Authenticator | None) -> None:
    """Mount more routes on the intake's app (before it starts), each guarded by ``auth``.

    ``auth`` is required so a public route is a visible decision (``auth=None``), never an omission.
    """
    for route in routes:
        handler = route.handler
        if isinstance(handler, type):
            raise TypeError(f"{route.method} {route.path}: class-based views are not supported; use a function")
        guarded = handler if auth is None else requires(auth)(handler)
        web.RouteDef(route.method, route.path, guarded, route.kwargs).register(app.router)
