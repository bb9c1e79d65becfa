"""Prometheus metrics, fed by the delivery engine's state snapshots and attempt records and by the intake.

Per-webhook series carry ``namespace`` and ``webhook`` labels and are removed when a webhook is deleted, so a
cluster with churning Webhooks does not grow series forever. The attempt-latency histogram has no webhook label:
ten thousand webhooks times a dozen buckets would be a cardinality problem for no operational gain.
"""

from __future__ import annotations

import contextlib
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from webhook_operator.api.outcomes import WebhookSnapshot
from webhook_operator.store.base import AttemptOutcome, AttemptRecord

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
        self._oldest: dict[str, float | None] = {}

    @staticmethod
    def _labels(key: str) -> tuple[str, str]:
        namespace, _, name = key.partition("/")
        return namespace, name

    def webhook_changed(self, snapshot: WebhookSnapshot) -> None:
        ns, name = self._labels(snapshot.key)
        self.queue_depth.labels(ns, name).set(snapshot.pending)
        self._oldest[snapshot.key] = snapshot.oldest_pending_at

    def attempt(self, record: AttemptRecord) -> None:
        ns, name = self._labels(record.webhook)
        outcome = "delivered" if record.outcome is AttemptOutcome.DELIVERED else "failed"
        self.deliveries.labels(ns, name, outcome).inc()
        self.attempt_seconds.labels(outcome).observe(record.duration_ms / 1000)
        if record.attempt > 1:
            self.retries.labels(ns, name).inc()

    def forget(self, key: str) -> None:
        ns, name = self._labels(key)
        self._oldest.pop(key, None)
        for metric in (self.queue_depth, self.oldest_age, self.retries):
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

    def render(self) -> bytes:
        now = time.time()
        for key, oldest in self._oldest.items():
            ns, name = self._labels(key)
            self.oldest_age.labels(ns, name).set(0.0 if oldest is None else max(0.0, now - oldest))
        return generate_latest(self.registry)
