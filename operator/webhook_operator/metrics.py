"""Prometheus metrics, fed by the delivery engine's state snapshots and attempt records and by the intake.

Per-webhook series carry ``namespace`` and ``webhook`` labels and are removed when a webhook is deleted, so a
cluster with churning Webhooks does not grow series forever. The attempt-latency histogram has no webhook label:
ten thousand webhooks times a dozen buckets would be a cardinality problem for no operational gain.

The hot path (one ``attempt`` and a ``webhook_changed`` or two per delivery) keeps each labelled child once it is
created instead of calling ``.labels()`` every time (a lock, a tuple and a dict lookup each: 2 % of the operator's
CPU in issue 12's profile); ``forget`` drops the kept children together with the series.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from webhook_operator.api.outcomes import WebhookSnapshot
from webhook_operator.store.base import AttemptOutcome, AttemptRecord, StoreUsage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "webhook_operator_deliveries",
            "Delivery attempts by outcome.",
            ["namespace", "webhook", "outcome"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "webhook_operator_delivery_attempt_seconds", "HTTP attempt duration.", ["outcome"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )  # fmt: skip
        self.queue_depth = Gauge("webhook_operator_queue_depth", "Events queued per webhook.",
                                 ["namespace", "webhook"], registry=r)  # fmt: skip
        self.oldest_age = Gauge("webhook_operator_oldest_pending_age_seconds", "Age of the oldest queued event.",
                                ["namespace", "webhook"], registry=r)  # fmt: skip
        self.retries = Counter("webhook_operator_retries", "Attempts that were retries of a failed batch.",
                               ["namespace", "webhook"], registry=r)  # fmt: skip
        self.intake_events = Counter("webhook_operator_intake_events", "Events posted to the intake by result.",
                                     ["result"], registry=r)  # fmt: skip
        self.intake_requests = Counter("webhook_operator_intake_requests", "Intake requests by HTTP status.",
                                       ["code"], registry=r)  # fmt: skip
        self.status_patches = Counter("webhook_operator_status_patches", "Status subresource patches by result.",
                                      ["result"], registry=r)  # fmt: skip
        self.store_bytes = Gauge("webhook_operator_store_bytes", "Live bytes in the event store (pages in use).",
                                 registry=r)  # fmt: skip
        self.store_budget = Gauge("webhook_operator_store_budget_bytes", "The store's space budget (--store-max-"
                                  "bytes); over it the intake answers 507. 0: no budget.", registry=r)  # fmt: skip
        self.dead_letters = Gauge("webhook_operator_dead_letters", "Dead letters kept per webhook (queue limits, "
                                  "skips); retention removes them.", ["namespace", "webhook"], registry=r)  # fmt: skip
        self._dead: dict[str, int] = {}
        self._oldest: dict[str, float | None] = {}
        #: Labelled children kept for the hot path, by webhook key (and outcome); created on first use, as before.
        self._depth: dict[str, Any] = {}
        self._counted: dict[tuple[str, str], Any] = {}
        self._retried: dict[str, Any] = {}
        self._seconds: dict[str, Any] = {}

    @staticmethod
    def _labels(key: str) -> tuple[str, str]:
        namespace, _, name = key.partition("/")
        return namespace, name

    def webhook_changed(self, snapshot: WebhookSnapshot) -> None:
        key = snapshot.key
        depth = self._depth.get(key)
        if depth is None:
            depth = self._depth[key] = self.queue_depth.labels(*self._labels(key))
        depth.set(snapshot.pending)
        self._oldest[key] = snapshot.oldest_pending_at
        self._dead[key] = snapshot.dead_letters  # set on the gauge at scrape time, like the oldest age

    def attempt(self, record: AttemptRecord) -> None:
        key = record.webhook
        outcome = "delivered" if record.outcome is AttemptOutcome.DELIVERED else "failed"
        counted = self._counted.get((key, outcome))
        if counted is None:
            counted = self._counted[key, outcome] = self.deliveries.labels(*self._labels(key), outcome)
        counted.inc()
        seconds = self._seconds.get(outcome)
        if seconds is None:
            seconds = self._seconds[outcome] = self.attempt_seconds.labels(outcome)
        seconds.observe(record.duration_ms / 1000)
        if record.attempt > 1:
            retried = self._retried.get(key)
            if retried is None:
                retried = self._retried[key] = self.retries.labels(*self._labels(key))
            retried.inc()

    def forget(self, key: str) -> None:
        ns, name = self._labels(key)
        self._oldest.pop(key, None)
        self._dead.pop(key, None)
        self._depth.pop(key, None)
        self._retried.pop(key, None)
        for outcome in ("delivered", "failed"):
            self._counted.pop((key, outcome), None)
        for metric in (self.queue_depth, self.oldest_age, self.retries, self.dead_letters):
            with contextlib.suppress(KeyError):
                metric.remove(ns, name)
        for outcome in ("delivered", "failed"):
            with contextlib.suppress(KeyError):
                self.deliveries.remove(ns, name, outcome)

    def sync_status_patches(self, total: int, failures: int) -> None:
        """Bring the status-patch counters up to the writer's own tallies (it counts; we only expose)."""
        for result, value in (("ok", total - failures), ("error", failures)):
            counter = self.status_patches.labels(result)
            missing = value - counter._value.get()
            if missing > 0:
                counter.inc(missing)

    def store_usage(self, usage: StoreUsage) -> None:
        self.store_bytes.set(usage.used_bytes)
        self.store_budget.set(usage.budget_bytes or 0)

    def render(self) -> bytes:
        now = time.time()
        for key, oldest in self._oldest.items():
            ns, name = self._labels(key)
            self.oldest_age.labels(ns, name).set(0.0 if oldest is None else max(0.0, now - oldest))
        for key, dead in self._dead.items():
            self.dead_letters.labels(*self._labels(key)).set(dead)
        return generate_latest(self.registry)
