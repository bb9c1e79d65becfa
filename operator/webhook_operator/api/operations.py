"""Operations on a Webhook (test, resume, skip, redeliver) as data: request annotations, their values, results.

Pure and shared by every way of asking — the annotation handler, the HTTP operations API and the
``kubectl-webhook`` command line — so the three parse the same text the same way (``docs/operations.md``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

ANNOTATION_PREFIX = "events.open-metadata.org/"
TEST, RESUME, SKIP, REDELIVER = "test", "resume", "skip", "redeliver"
OPERATIONS = (TEST, RESUME, SKIP, REDELIVER)
#: The request annotations, e.g. ``events.open-metadata.org/test``; a new value is a new request.
ANNOTATIONS = {op: ANNOTATION_PREFIX + op for op in OPERATIONS}

#: The synthetic event a test sends: marked in the event type, the entity type, a ``test`` field and a header.
TEST_EVENT_TYPE = "webhookTest"
TEST_HEADER = "X-Webhook-Operator-Test"

#: The API server's service proxy drops ``Authorization`` after using it, so through the proxy the caller's
#: token travels in this header instead (``kubectl webhook`` sends both).
PROXY_TOKEN_HEADER = "X-Webhook-Operator-Authorization"  # noqa: S105 - a header name

#: Most events one redelivery may queue; a larger range must be split (or narrowed).
MAX_REDELIVERY = 10_000

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


#: The latest time a request may name (9999-12-31T23:59:59Z); times are clamped to [the epoch, this], where every
#: stored time lies, so an absurd age (``999999999d``) is "since the beginning", never an overflow later on.
MAX_TIME = 253_402_300_799.0


def parse_time(text: str, now: float) -> float:
    """Unix seconds from RFC 3339 (``2026-03-04T18:00:00Z``, an offset, fractions) or an age (``90s``, ``15m``,
    ``2h``, ``7d``: that long before ``now``), clamped to [0, MAX_TIME]. Raises ValueError with the accepted forms."""
    value = text.strip()
    match = _AGO.match(value)
    if match:
        return min(max(now - float(match.group(1)) * _UNITS[match.group(2)], 0.0), MAX_TIME)
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        moment = None
    if moment is None or "T" not in value.upper():
        raise ValueError(f"invalid time {text!r}: use RFC 3339 (2026-03-04T18:00:00Z) or an age like 30m, 2h, 1d")
    if moment.tzinfo is None:
        raise ValueError(f"invalid time {text!r}: RFC 3339 needs a zone (Z or +01:00)")
    try:
        return min(max(moment.timestamp(), 0.0), MAX_TIME)
    except (OverflowError, ValueError):  # year 1 with a positive offset lies before datetime.min
        return 0.0


def format_time(timestamp: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-03-04T18:00:00.123Z`` (clamped like ``parse_time``)."""
    timestamp = min(max(timestamp, 0.0), MAX_TIME)
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RedeliverRequest:
    """Redeliver either the events ``event_ids`` that were routed to the webhook, or the events it delivered (or
    skipped) that the operator accepted in ``[since, until)``, to ``to`` (a Webhook in the same namespace, whose
    filters are applied again) or to itself."""

    event_ids: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    to: str | None = None

    def __post_init__(self) -> None:
        if self.event_ids and (self.since is not None or self.until is not None):
            raise ValueError("give either event ids or a time range (since/until), not both")
        if not self.event_ids and self.since is None:
            raise ValueError("give event ids (ids=a,b) or a time range with at least since=")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be later than since")
        if len(self.event_ids) > MAX_REDELIVERY:
            raise ValueError(f"at most {MAX_REDELIVERY} event ids per redelivery")
        if self.to is not None and not _DNS_LABEL.match(self.to):
            raise ValueError(f"to={self.to!r} is not a Webhook name (a Webhook in the same namespace)")

    def describe(self) -> str:
        what = (
            f"events {', '.join(self.event_ids[:3])}{' …' if len(self.event_ids) > 3 else ''}"
            if self.event_ids
            else f"events accepted from {format_time(self.since or 0.0)}"
            + (f" until {format_time(self.until)}" if self.until is not None else "")
        )
        return what + (f" to {self.to}" if self.to else "")


def parse_redeliver(value: str, now: float) -> RedeliverRequest:
    """The ``redeliver`` annotation: comma (or semicolon) separated ``key=value`` items.

    ``ids=a,b,c`` (items without ``=`` continue the id list), ``since=<time>``, ``until=<time>``, ``to=<webhook>``,
    and ``request=<anything>``, which is ignored: change it to repeat an identical redelivery.
    """
    ids: list[str] = []
    since = until = None
    to: str | None = None
    last = ""
    seen: set[str] = set()
    for raw in re.split(r"[,;\s]+", value.strip()):
        if not raw:
            continue
        key, sep, item = raw.partition("=")
        if not sep:
            if last != "ids":
                raise ValueError(f"{raw!r}: expected key=value (ids=, since=, until=, to=, request=)")
            ids.append(raw)
            continue
        key = key.strip().lower()
        if key in seen:
            raise ValueError(f"{key}= given twice")
        seen.add(key)
        last = key
        if key == "ids":
            ids.extend([item] if item else [])
        elif key == "since":
            since = parse_time(item, now)
        elif key == "until":
            until = parse_time(item, now)
        elif key == "to":
            to = item or None
        elif key != "request":
            raise ValueError(f"unknown key {key!r} (expected ids, since, until, to or request)")
    return RedeliverRequest(tuple(dict.fromkeys(ids)), since, until, to)


@dataclass(frozen=True)
class TestResult:
    """What a test delivery did; ``status.lastTest`` and the CLI show it."""

    __test__ = False  # not a pytest class

    time: float
    ok: bool
    status_code: int | None
    latency_ms: float
    error: str | None
    event_id: str
    requested_by: str
    trigger: str = ""

    def to_status(self) -> dict[str, object]:
        """The ``status.lastTest`` object (camelCase, validated by the CRD)."""
        return {
            "time": format_time(self.time),
            "success": self.ok,
            "statusCode": self.status_code,
            "latencyMs": round(self.latency_ms),
            "error": self.error,
            "eventId": self.event_id,
            "requestedBy": self.requested_by,
            "trigger": self.trigger or None,
        }

    def describe(self) -> str:
        code = f"HTTP {self.status_code}" if self.status_code is not None else "no response"
        verdict = "succeeded" if self.ok else "failed"
        detail = f": {self.error}" if self.error and not self.ok else ""
        timing = f"{code} in {round(self.latency_ms)} ms"
        return f"test delivery {verdict} ({timing}){detail}; requested by {self.requested_by}"


@dataclass(frozen=True)
class RedeliveryResult:
    target: str  # namespace/name the events were queued for
    event_ids: list[str] = field(default_factory=list)
    #: Requested ids not routed to the source webhook: never accepted, pruned, or another webhook's event (the
    #: three are not told apart, so the answer reveals nothing about other webhooks' events).
    missing: list[str] = field(default_factory=list)
    #: Ids of the source's events that the ``to`` target's filters do not admit: not sent.
    filtered: list[str] = field(default_factory=list)


class OperationError(Exception):
    """An operation that cannot be done as asked; ``status`` is the HTTP status it maps to (404 unknown webhook,
    409 nothing to do in the current state, 400 a bad request)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
