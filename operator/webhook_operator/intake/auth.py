"""Who may post events: bearer tokens, optional HMAC signatures of the body, and a per-route guard.

Tokens come from a ``TokenSource`` so the operator can feed them from a mounted file (``FileTokens``, re-read when
the file changes, which is how a rotated Kubernetes Secret volume shows up) or from anything else that keeps a set
up to date. Comparison hashes both sides to fixed-length digests and checks *every* configured token with
``hmac.compare_digest``: neither the position of a matching token nor the length of a wrong guess shows in the time
taken.

Signatures follow OpenMetadata: its server sends ``X-OM-Signature: sha256=<base64 HMAC-SHA256(secret, body)>``; the
seed (and this operator's own outgoing signer) documents ``X-OpenMetadata-Signature: sha256=<hex>``. Both are
accepted, computed over the exact raw body, since re-serialising would change the bytes that were signed.

Authentication is a per-route decorator (``requires``) over an ``Authenticator`` protocol rather than an app-wide
middleware, because the operations API mounted on the same app authenticates differently (Kubernetes TokenReview).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web

from webhook_operator.intake.errors import IntakeError

log = logging.getLogger(__name__)

OM_SIGNATURE_HEADER = "X-OM-Signature"
SEED_SIGNATURE_HEADER = "X-OpenMetadata-Signature"
SIGNATURE_PREFIX = "sha256="
REALM = "webhook-operator"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- token sources ---------------------------------------------------------------------------------------------------


class TokenSource(Protocol):
    """The currently accepted bearer tokens. Called on every request, so it must be cheap; return the same frozenset
    object while nothing changed (the checker caches digests per set)."""

    def tokens(self) -> frozenset[str]: ...


def parse_token_lines(text: str) -> frozenset[str]:
    """One token per line; surrounding whitespace, blank lines and ``#`` comment lines are ignored."""
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


class StaticTokens:
    """A fixed set of tokens (tests, or tokens read once from a Secret)."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = frozenset(t.strip() for t in tokens if t.strip())

    def tokens(self) -> frozenset[str]:
        return self._tokens


class FileTokens:
    """Tokens from a file, re-read whenever its modification stamp changes.

    The stamp is (mtime, ctime, size, inode) of the file the path resolves to: a Kubernetes Secret volume rotates by
    swapping a symlink to a new file, which changes the inode even when the clock granularity hides the mtime change.
    A missing or unreadable file means *no* token is accepted (fail closed), logged once, until the file appears:
    the manifests mount the token Secret as optional so it can be created after the operator, and revoking access
    by removing the file must work too.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int, int] | None = None
        self._tokens: frozenset[str] = frozenset()
        self._failing = False
        self.tokens()

    def tokens(self) -> frozenset[str]:
        try:
            st = os.stat(self.path)
            if _stamp(st) != self._stamp:
                self._tokens = parse_token_lines(self.path.read_text(encoding="utf-8"))
                self._stamp = _stamp(st)
                self._failing = False
                log.info("loaded %d intake token(s) from %s", len(self._tokens), self.path)
        except (OSError, UnicodeDecodeError) as exc:
            if not self._failing:
                log.error("intake token file %s unusable (%s): no bearer token is accepted until it is readable",
                          self.path, exc)  # fmt: skip
            self._failing, self._stamp, self._tokens = True, None, frozenset()
        return self._tokens


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino


# --- authenticators --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who an authenticator let through. ``name`` is what logs and Events show ("who asked"); ``authorize``,
    when set, checks one more access the route needs (verb, namespace, webhook name) and raises 403 if denied."""

    name: str
    authorize: Callable[[str, str, str], Awaitable[None]] | None = None


CALLER = web.RequestKey("caller", Caller)


def caller_of(request: web.Request) -> Caller:
    return request.get(CALLER) or Caller("anonymous")


class Authenticator(Protocol):
    """Decides whether a request may reach a route; raises ``IntakeError`` (401/403) when not. Async because other
    authenticators (the operations API's TokenReview) ask the Kubernetes API."""

    async def authenticate(self, request: web.Request) -> None: ...


def requires(auth: Authenticator) -> Callable[[Handler], Handler]:
    """Route decorator: run ``auth`` before the handler."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            await auth.authenticate(request)
            return await handler(request)

        return guarded

    return wrap


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def unauthorized(message: str, error: str | None = None) -> IntakeError:
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return IntakeError(401, message, headers={"WWW-Authenticate": challenge})


class BearerAuth:
    """``Authorization: Bearer <token>`` against a ``TokenSource``.

    Anonymous mode must be asked for explicitly. In it, a request without credentials passes, but a request that
    presents a token still has it checked when tokens are configured: a wrong token is a mistake worth reporting.
    """

    def __init__(self, source: TokenSource | None, *, allow_anonymous: bool = False) -> None:
        if source is None and not allow_anonymous:
            raise ValueError("no bearer token source configured and anonymous intake not enabled")
        self._source = source
        self.allow_anonymous = allow_anonymous
        self._cached: tuple[frozenset[str], tuple[bytes, ...]] | None = None

    def matches(self, presented: str) -> bool:
        """True when ``presented`` is one of the tokens; constant time in the token values."""
        if self._source is None:
            return False
        tokens = self._source.tokens()
        if self._cached is None or self._cached[0] is not tokens:
            self._cached = (tokens, tuple(_digest(t) for t in tokens))
        candidate = _digest(presented)
        found = False
        for digest in self._cached[1]:  # no early exit: every token is compared
            found |= hmac.compare_digest(candidate, digest)
        return found

    async def authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization")
        if header is None or (self._source is None and self.allow_anonymous):
            if self.allow_anonymous:
                return
            raise unauthorized("missing bearer token: send Authorization: Bearer <token>")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("Authorization header must be 'Bearer <token>'", "invalid_request")
        if not self.matches(token):
            raise unauthorized("invalid bearer token", "invalid_token")
        # Tokens carry no identity: name the caller by a short digest, which tells tokens apart in logs.
        request[CALLER] = Caller("token:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:8])


# --- signatures ------------------------------------------------------------------------------------------------------


def load_hmac_secret(path: str | Path) -> bytes:
    """The signature secret from a file. Trailing newlines are dropped (``echo secret > file`` adds one); nothing
    else is, so a secret with meaningful spaces keeps them."""
    secret = Path(path).read_bytes().rstrip(b"\r\n")
    if not secret:
        raise ValueError(f"HMAC secret file {path} is empty")
    return secret


def _decode_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _decode_hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


_SCHEMES: tuple[tuple[str, str, Callable[[str], bytes | None]], ...] = (
    (OM_SIGNATURE_HEADER, "base64", _decode_base64),
    (SEED_SIGNATURE_HEADER, "hex", _decode_hex),
)


class SignatureVerifier:
    """Checks ``X-OM-Signature`` (base64) and/or ``X-OpenMetadata-Signature`` (hex) against the raw body.

    At least one must be present; every one present must match (a sender that adds both must sign both right).
    There is no timestamp in either scheme, so a captured request can be replayed; the store's duplicate-id check
    makes a replayed event a no-op, and TLS between OpenMetadata and the intake keeps captures rare.
    """

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("HMAC secret is empty")
        self._secret = secret

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        expected = hmac.new(self._secret, body, hashlib.sha256).digest()
        present = [(name, headers.get(name), encoding, decode) for name, encoding, decode in _SCHEMES]
        if all(value is None for _, value, _, _ in present):
            raise IntakeError(401, f"missing signature: send {OM_SIGNATURE_HEADER}: sha256=<base64 HMAC-SHA256> "
                                   f"(or {SEED_SIGNATURE_HEADER}: sha256=<hex>) of the raw body")  # fmt: skip
        for name, value, encoding, decode in present:
            if value is None:
                continue
            value = value.strip()
            raw = decode(value[len(SIGNATURE_PREFIX) :]) if value.lower().startswith(SIGNATURE_PREFIX) else None
            if raw is None:
                raise IntakeError(401, f"{name} is malformed: expected sha256=<{encoding} HMAC-SHA256 of the body>")
            if not hmac.compare_digest(raw, expected):
                raise IntakeError(401, f"{name} does not match the body (wrong secret, or the body was altered)")
