"""Metrics keep their labelled children for the hot path; what /metrics shows must not change because of it."""

from __future__ import annotations

from webhook_operator.api.outcomes import WebhookSnapshot, WebhookState
from webhook_operator.metrics import Metrics
from webhook_operator.store.base import AttemptOutcome, AttemptRecord


def attempt(key: str, outcome: AttemptOutcome, number: int = 1) -> AttemptRecord:
    return AttemptRecord(key, "d-1", ["e-1"], number, 0.0, 12.0, outcome)


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_counts_and_depth_per_webhook_and_nothing_before_first_use() -> None:
    m = Metrics()
    assert b"webhook_operator_delivery_attempt_seconds_bucket" not in m.render()
    for _ in range(3):
        m.attempt(attempt("ns/a", AttemptOutcome.DELIVERED))
    m.attempt(attempt("ns/a", AttemptOutcome.FAILED, 2))
    m.attempt(attempt("ns/b", AttemptOutcome.DELIVERED))
    m.webhook_changed(WebhookSnapshot("ns/a", WebhookState.ACTIVE, "", "", 3, 1, pending=7))
    m.webhook_changed(WebhookSnapshot("ns/a", WebhookState.ACTIVE, "", "", 3, 1, pending=5))
    labels = {"namespace": "ns", "webhook": "a"}
    assert sample(m, "webhook_operator_deliveries_total", outcome="delivered", **labels) == 3
    assert sample(m, "webhook_operator_deliveries_total", outcome="failed", **labels) == 1
    assert sample(m, "webhook_operator_retries_total", **labels) == 1
    assert sample(m, "webhook_operator_queue_depth", **labels) == 5
    assert sample(m, "webhook_operator_delivery_attempt_seconds_count", outcome="delivered") == 4
    assert sample(m, "webhook_operator_deliveries_total", outcome="delivered", namespace="ns", webhook="b") == 1


def test_a_forgotten_webhook_starts_again_from_zero() -> None:
    m = Metrics()
    m.attempt(attempt("ns/a", AttemptOutcome.DELIVERED, 2))
    m.webhook_changed(WebhookSnapshot("ns/a", WebhookState.ACTIVE, "", "", 1, 0, pending=4))
    m.forget("ns/a")
    labels = {"namespace": "ns", "webhook": "a"}
    assert sample(m, "webhook_operator_deliveries_total", outcome="delivered", **labels) is None
    assert sample(m, "webhook_operator_queue_depth", **labels) is None
    m.attempt(attempt("ns/a", AttemptOutcome.DELIVERED, 2))
    m.webhook_changed(WebhookSnapshot("ns/a", WebhookState.ACTIVE, "", "", 1, 0, pending=1))
    assert sample(m, "webhook_operator_deliveries_total", outcome="delivered", **labels) == 1
    assert sample(m, "webhook_operator_retries_total", **labels) == 1
    assert sample(m, "webhook_operator_queue_depth", **labels) == 1
