"""How often a tenant may send test deliveries, and how much of the store they may use.

A test is sent at once (outside the queue) and leaves a delivery-log line with the start of the receiver's answer.
Unbounded, that is a way for one tenant to fill the store everyone shares (issue 13 review: 1,200 tests against a
receiver answering 4 KiB pushed a 4 MiB store over its budget in about a second, and the intake then refused every
tenant's events). So tests are bounded three ways:

* rate: per Webhook (a burst of ``WEBHOOK_BURST``, then one per ``WEBHOOK_INTERVAL`` seconds) and per namespace —
  the tenant — (a burst of ``NAMESPACE_BURST``, then one per ``NAMESPACE_INTERVAL``), and one test in flight per
  Webhook; over it the caller gets 429 with the wait;
* size: a test's log line keeps at most ``TEST_BODY_CHARS`` of the answer (enough to see why it failed);
* space: no test while the store uses ``TEST_CEILING`` of its budget or more, so tests can never be what makes the
  intake refuse events (it refuses at 100 %).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from webhook_operator.api.operations import OperationError

WEBHOOK_BURST, WEBHOOK_INTERVAL = 3, 10.0
NAMESPACE_BURST, NAMESPACE_INTERVAL = 10, 2.0
TEST_BODY_CHARS = 256
TEST_CEILING = 0.9
RATE_MESSAGE = (
    f"too many test deliveries: at most {WEBHOOK_BURST} in a row and one every {WEBHOOK_INTERVAL:g} s per Webhook, "
    f"{NAMESPACE_BURST} in a row and one every {NAMESPACE_INTERVAL:g} s per namespace; retry in {{wait}} s"
)
#: Buckets kept at most (one per Webhook and one per namespace that tested recently); full ones are dropped first.
MAX_BUCKETS = 10_000


@dataclass
class _Bucket:
    tokens: float
    at: float


class _Buckets:
    def __init__(self, burst: int, interval: float) -> None:
        self._burst, self._interval = burst, interval
        self._buckets: dict[str, _Bucket] = {}

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may take a token (0: now), refilling first."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) / self._interval)
        bucket.at = now
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) * self._interval

    def take(self, key: str, now: float) -> None:
        bucket = self._buckets.setdefault(key, _Bucket(float(self._burst), now))
        bucket.tokens -= 1
        if len(self._buckets) > MAX_BUCKETS:
            self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.tokens + (now - b.at) / self._interval >= self._burst]:
            del self._buckets[key]


class TestLimits:
    """The rate part, per Webhook key ``namespace/name``; ``admit`` raises OperationError(429) naming the wait."""

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._webhooks = _Buckets(WEBHOOK_BURST, WEBHOOK_INTERVAL)
        self._namespaces = _Buckets(NAMESPACE_BURST, NAMESPACE_INTERVAL)
        self._in_flight: set[str] = set()

    def admit(self, key: str) -> None:
        now = self._clock()
        namespace = key.partition("/")[0]
        if key in self._in_flight:
            raise OperationError(429, f"a test of {key} is already in flight: wait for its result")
        wait = max(self._webhooks.wait(key, now), self._namespaces.wait(namespace, now))
        if wait > 0:
            raise OperationError(429, RATE_MESSAGE.format(wait=math.ceil(wait)))
        self._webhooks.take(key, now)
        self._namespaces.take(namespace, now)
        self._in_flight.add(key)

    def done(self, key: str) -> None:
        self._in_flight.discard(key)
