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
That one is expensive per unknown caller, so this module also has the bounded pieces it uses to stay cheap for
attackers (issue 13, finding 8): ``TtlCache`` (answers by token digest, never by token) and ``RateLimiter`` (token
buckets per client address, 429 when empty).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar, runtime_checkable

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

    The file is stat-ed at most once per ``recheck_seconds`` (1 s), not on every request: a stat per POST was a
    visible share of the intake's CPU under load. So a rotated, revoked or removed token keeps working (or a new one
    is refused) for at most that long after the file changed.
    """

    def __init__(self, path: str | Path, *, recheck_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.path = Path(path)
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._next_check = -math.inf
        self._stamp: tuple[int, int, int, int] | None = None
        self._tokens: frozenset[str] = frozenset()
        self._failing = False
        self.tokens()

    def tokens(self) -> frozenset[str]:
        now = self._clock()
        if now < self._next_check:
            return self._tokens
        self._next_check = now + self.recheck_seconds
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


@runtime_checkable
class Closeable(Protocol):
    """An authenticator that holds resources (threads) to release when the server stops."""

    def close(self) -> None: ...


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
        return self._match(_digest(presented))

    def _match(self, candidate: bytes) -> bool:
        if self._source is None:
            return False
        tokens = self._source.tokens()
        if self._cached is None or self._cached[0] is not tokens:
            self._cached = (tokens, tuple(_digest(t) for t in tokens))
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
        digest = _digest(token)  # hashed once: compared, then named from
        if not self._match(digest):
            raise unauthorized("invalid bearer token", "invalid_token")
        # Tokens carry no identity: name the caller by a short digest, which tells tokens apart in logs.
        request[CALLER] = Caller("token:" + digest[:4].hex())


# --- bounded caches and rate limits for expensive authenticators ----------------------------------------------------

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Entries that expire ``ttl`` seconds after they were put, at most ``max_entries`` of them.

    When full, expired entries go first, then the oldest ones: an attacker who floods the cache with new keys only
    pushes out older answers (which just cost a review again), never grows memory.
    """

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.max_entries, self._clock = ttl, max_entries, clock
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._items[key]
            return None
        return item[1]

    def put(self, key: K, value: V) -> None:
        self._items.pop(key, None)
        if len(self._items) >= self.max_entries:
            now = self._clock()
            for stale in [k for k, (until, _) in self._items.items() if until <= now]:
                del self._items[stale]
            while len(self._items) >= self.max_entries:
                del self._items[next(iter(self._items))]
        self._items[key] = (self._clock() + self.ttl, value)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)


def client_key(remote: str | None) -> str:
    """The rate-limit identity of a peer address: the IPv4 address, or the /64 of an IPv6 one (one host usually
    owns a whole /64, so per-address buckets would be free to multiply). Forwarding headers are not trusted."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimiter:
    """A token bucket per client: ``rate`` tokens a second, at most ``burst``; ``charge`` takes one or raises 429.

    At most ``max_clients`` buckets are kept: when full, buckets that have refilled (idle clients, which a new bucket
    would equal) are dropped, then the oldest.
    """

    def __init__(self, rate: float = 10.0, burst: float = 20.0, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate, self.burst, self.max_clients, self._clock = rate, burst, max_clients, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when counted)

    def _tokens(self, client: str, now: float) -> float:
        tokens, stamp = self._buckets.get(client, (self.burst, now))
        return min(self.burst, tokens + (now - stamp) * self.rate)

    def charge(self, client: str, what: str = "authentication failures and reviews") -> None:
        now = self._clock()
        tokens = self._tokens(client, now)
        if client not in self._buckets and len(self._buckets) >= self.max_clients:
            for idle in [c for c in self._buckets if self._tokens(c, now) >= self.burst]:
                del self._buckets[idle]
            while len(self._buckets) >= self.max_clients:
                del self._buckets[next(iter(self._buckets))]
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            wait = max(1, math.ceil((1.0 - tokens) / self.rate))
            raise IntakeError(429, f"too many {what} from {client}; retry in {wait} s",
                              headers={"Retry-After": str(wait)})  # fmt: skip
        self._buckets[client] = (tokens - 1.0, now)

    def __len__(self) -> int:
        return len(self._buckets)


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

#: The exact shape of each signature header (an HMAC-SHA256 is 32 bytes: 44 base64 characters, 64 hex digits), as
#: the OpenAPI document states it (issue 13, item 11). A header that is present must have it, secret or not; an empty
#: one counts as absent (as HTTP tooling reads it), which the optional group documents.
SIGNATURE_PATTERNS = {
    OM_SIGNATURE_HEADER: r"^(?:sha256=[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)?$",
    SEED_SIGNATURE_HEADER: r"^(?:sha256=[0-9a-fA-F]{64})?$",
}
_SIGNATURE_SHAPES = {name: re.compile(pattern) for name, pattern in SIGNATURE_PATTERNS.items()}


def _malformed(name: str, encoding: str) -> str:
    return f"{name} is malformed: expected sha256=<{encoding} HMAC-SHA256 of the body>"


def check_signature_format(headers: Mapping[str, str]) -> None:
    """400 for a signature header that is present but not a signature, when the intake has no secret to check it
    against: the sender has a bug (or sends to the wrong place), and ignoring what the API documents as malformed
    would hide it. A well-formed signature is accepted unchecked (OpenMetadata may sign while the intake does not)."""
    for name, encoding, _ in _SCHEMES:
        value = headers.get(name)
        if value and not _SIGNATURE_SHAPES[name].fullmatch(value):  # empty is absent, as on the verifier's side
            raise IntakeError(400, _malformed(name, encoding))


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
        present = [(name, headers.get(name) or None, encoding, decode) for name, encoding, decode in _SCHEMES]
        if all(value is None for _, value, _, _ in present):
            raise IntakeError(401, f"missing signature: send {OM_SIGNATURE_HEADER}: sha256=<base64 HMAC-SHA256> "
                                   f"(or {SEED_SIGNATURE_HEADER}: sha256=<hex>) of the raw body")  # fmt: skip
        for name, value, encoding, decode in present:
            if value is None:
                continue
            value = value.strip()
            well_formed = value and _SIGNATURE_SHAPES[name].fullmatch(value)  # blank after strip: malformed
            raw = decode(value[len(SIGNATURE_PREFIX) :]) if well_formed else None
            if raw is None:
                raise IntakeError(401, _malformed(name, encoding))
            if not hmac.compare_digest(raw, expected):
                raise IntakeError(401, f"{name} does not match the body (wrong secret, or the body was altered)")
