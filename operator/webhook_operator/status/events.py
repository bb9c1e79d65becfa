"""Kubernetes Events for webhook state transitions: what ``kubectl describe webhook`` and ``kubectl get events`` show.

Which transitions make an Event is decided by ``transition_events`` (pure). ``EventRecorder`` posts them as core/v1
Events, off the event loop, with two limits so a flapping endpoint or ten thousand failing webhooks cannot flood
the API server:

* Per (webhook, reason): at most one API call per ``window`` (default 60 s). Repeats inside the window are not
  sent but *tallied*; the next call after the window patches the existing Event's ``count`` (and
  ``lastTimestamp``/``message``) to include them, like client-go's event correlator does. So ``count`` stays
  truthful while the API load stays at one call per window. If that Event has expired (404), a new one is created.
* Globally: at most ``max_per_second`` calls; beyond that Events are dropped (and counted in ``dropped_total``).

Messages are truncated and come from the engine's already-masked reasons; nothing else is put into an Event.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from webhook_operator.api.crd import API_VERSION, KIND
from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.api.text import truncate
from webhook_operator.api.webhook_status import WebhookState
from webhook_operator.status.kube import ClientSource, Kube, classify, describe
from webhook_operator.status.schedule import PatchOutcome, TokenBucket
from webhook_operator.status.summary import MAX_MESSAGE, rfc3339

log = logging.getLogger(__name__)

COMPONENT = "webhook-operator"
NORMAL = "Normal"
WARNING = "Warning"

DELIVERY_RECOVERED = "DeliveryRecovered"
QUEUE_LIMIT_EXCEEDED = "QueueLimitExceeded"
INLINE_SECRET = "InlineSecret"  # noqa: S105 (an Event reason, not a password)

_FAILING = frozenset({WebhookState.AWAITING_RETRY, WebhookState.FAILED})
_BROKEN = _FAILING | {WebhookState.RETRY_LIMIT_REACHED}

EventSpec = tuple[str, str, str]  # (type, reason, message)


@dataclass(frozen=True)
class ObjectRef:
    """The Webhook an Event is about (``involvedObject``)."""

    namespace: str
    name: str
    uid: str | None = None
    api_version: str = API_VERSION
    kind: str = KIND

    @classmethod
    def from_key(cls, key: str, uid: str | None = None) -> ObjectRef:
        namespace, _, name = key.partition("/")
        return cls(namespace=namespace, name=name, uid=uid)


def queue_limit_event(previous: WebhookSnapshot | None, current: WebhookSnapshot) -> EventSpec | None:
    """A Warning when the queue limits moved more events to the dead letters since the last snapshot (pure). The
    recorder's window folds a flood of them into one Event whose ``count`` keeps growing."""
    before = previous.overflowed if previous is not None else 0
    if current.overflowed <= before:
        return None
    since = f" since {rfc3339(current.dead_lettered_since)}" if current.dead_lettered_since is not None else ""
    message = (f"{current.dead_letter_reason or 'queue limit reached'}; {current.dead_letters} events of this "
               f"webhook are in the dead letters{since} (kept for the retention period, redeliverable)")  # fmt: skip
    return WARNING, QUEUE_LIMIT_EXCEEDED, truncate(message, MAX_MESSAGE)


def transition_events(previous: WebhookSnapshot | None, current: WebhookSnapshot) -> list[EventSpec]:
    """The Events a change from ``previous`` to ``current`` deserves (pure).

    Only transitions between kinds of state count, never counter updates, and awaitingRetry ↔ failed is still the
    same "failing". A webhook seen for the first time (``previous`` None, e.g. after an operator restart) only
    reports trouble, never "recovered" or "disabled", which would be noise on every restart.
    """
    was = previous.state if previous is not None else None
    now = current.state
    message = truncate(current.message, MAX_MESSAGE)
    config_error = current.reason == Reason.CONFIGURATION_ERROR
    was_config_error = previous is not None and previous.reason == Reason.CONFIGURATION_ERROR
    events: list[EventSpec] = []
    if config_error and not was_config_error:
        events.append((WARNING, Reason.CONFIGURATION_ERROR, message or "configuration error"))
    elif now is WebhookState.RETRY_LIMIT_REACHED and was is not WebhookState.RETRY_LIMIT_REACHED:
        events.append((WARNING, Reason.RETRY_LIMIT_REACHED, message or "retry limit reached; delivery paused"))
    elif now in _FAILING and was not in _BROKEN and not config_error:
        events.append((WARNING, Reason.DELIVERY_FAILING, message or "delivery failing"))
    elif now is WebhookState.ACTIVE and was in _BROKEN:
        events.append((NORMAL, DELIVERY_RECOVERED, message or "deliveries succeed again"))
    elif now is WebhookState.DISABLED and was is not None and was is not WebhookState.DISABLED:
        events.append((NORMAL, Reason.DISABLED, message or "webhook disabled"))
    return events


@dataclass
class _Series:
    """The last Event sent for one (webhook, reason)."""

    sent_at: float  # monotonic
    name: str | None = None  # the Event object, once created
    count: int = 0  # occurrences recorded in that object
    tallied: int = 0  # occurrences since, not sent yet


class EventRecorder:
    """Posts core/v1 Events about Webhooks, rate limited (see the module docstring)."""

    def __init__(
        self,
        api_client: ClientSource,
        *,
        window: float = 60.0,
        max_per_second: float = 10.0,
        instance: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        threads: int = 2,
    ) -> None:
        self._kube = Kube(api_client)
        self.window = window
        self._bucket = TokenBucket(max_per_second, now=clock())
        self._instance = instance or socket.gethostname()
        self._clock = clock
        self._wall = wall_clock
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="status-events")
        self.posted_total = 0  # API calls that succeeded
        self.suppressed_total = 0  # repeats folded into a later count
        self.dropped_total = 0  # lost to the global cap
        self.failed_total = 0  # API calls that failed (the occurrence stays tallied)

    async def record(self, ref: ObjectRef, type: str, reason: str, message: str) -> bool:
        """Record one occurrence; True if it went to the API server now (False: tallied, dropped or failed)."""
        now = self._clock()
        key = (ref.namespace, ref.name, reason)
        series = self._series.get(key)
        if series is not None and now - series.sent_at < self.window:
            series.tallied += 1
            self.suppressed_total += 1
            return False
        if not self._bucket.try_take(now):
            self.dropped_total += 1
            log.debug("event %s for %s/%s dropped: global event rate cap", reason, ref.namespace, ref.name)
            return False
        if series is None:
            series = self._series[key] = _Series(sent_at=now)
        reserved_from = series.sent_at if series.name is not None else float("-inf")
        series.sent_at = now  # reserve the window before awaiting, so concurrent repeats are tallied
        occurrences = series.tallied + 1
        series.tallied = 0
        loop, text = asyncio.get_running_loop(), truncate(message, MAX_MESSAGE)
        try:
            name, count = await loop.run_in_executor(
                self._executor, self._send, ref, type, reason, text, series.name, series.count, occurrences
            )
        except Exception as exc:
            # Give the window back so the next occurrence tries again, and keep this one in the tally.
            series.sent_at, series.tallied = reserved_from, series.tallied + occurrences
            self.failed_total += 1
            (log.debug if classify(exc) is PatchOutcome.RETRY else log.warning)(
                "event %s for %s/%s not recorded: %s", reason, ref.namespace, ref.name, describe(exc)
            )
            return False
        series.name, series.count = name, count
        self.posted_total += 1
        self._prune(now)
        return True

    def _send(
        self, ref: ObjectRef, type: str, reason: str, message: str, name: str | None, count: int, occurrences: int
    ) -> tuple[str, int]:
        stamp = rfc3339(self._wall())
        if name is not None:
            patch = {"count": count + occurrences, "lastTimestamp": stamp, "message": message, "type": type}
            try:
                self._kube.patch_event(ref.namespace, name, patch)
                return name, count + occurrences
            except Exception as exc:
                if classify(exc) is not PatchOutcome.GONE:
                    raise
        name = f"{ref.name}.{time.time_ns():x}"
        involved: dict[str, Any] = {
            "apiVersion": ref.api_version,
            "kind": ref.kind,
            "name": ref.name,
            "namespace": ref.namespace,
        }
        if ref.uid:
            involved["uid"] = ref.uid
        body = {
            "metadata": {"name": name, "namespace": ref.namespace},
            "involvedObject": involved,
            "type": type,
            "reason": reason,
            "message": message,
            "count": occurrences,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
        }
        self._kube.create_event(ref.namespace, body)
        return name, occurrences

    def _prune(self, now: float) -> None:
        """Forget series older than an Event's lifetime on the API server (1 h by default), bounding memory."""
        if len(self._series) < 1024:
            return
        horizon = max(self.window, 3600.0)
        for key in [k for k, s in self._series.items() if now - s.sent_at > horizon]:
            del self._series[key]

    def forget(self, ref: ObjectRef) -> None:
        """The webhook is gone: drop its series."""
        for key in [k for k in self._series if k[0] == ref.namespace and k[1] == ref.name]:
            del self._series[key]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._kube.close()
