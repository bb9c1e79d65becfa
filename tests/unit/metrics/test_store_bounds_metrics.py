"""The store's size against its budget, and dead letters per webhook, on /metrics (issue 13, finding 4): what an
alert needs to fire before the intake starts answering 507 or a webhook silently loses events to its limits."""

from __future__ import annotations

from webhook_operator.api.outcomes import WebhookSnapshot, WebhookState
from webhook_operator.metrics import Metrics
from webhook_operator.store.base import StoreUsage


def test_store_size_and_budget_gauges() -> None:
    m = Metrics()
    m.store_usage(StoreUsage(used_bytes=700 * 1024**2, budget_bytes=800 * 1024**2))
    text = m.render().decode()
    assert "webhook_operator_store_bytes 7.340032e+08" in text and "webhook_operator_store_budget_bytes" in text
    assert m.registry.get_sample_value("webhook_operator_store_budget_bytes") == 800 * 1024**2
    m.store_usage(StoreUsage(used_bytes=1))
    assert m.registry.get_sample_value("webhook_operator_store_budget_bytes") == 0, "no budget reads as 0"


def test_dead_letters_per_webhook_follow_the_snapshots_and_go_with_the_webhook() -> None:
    m = Metrics()
    m.webhook_changed(WebhookSnapshot("ns/a", WebhookState.AWAITING_RETRY, "", "", 0, 3, 5, dead_letters=15))
    labels = {"namespace": "ns", "webhook": "a"}
    m.render()
    assert m.registry.get_sample_value("webhook_operator_dead_letters", labels) == 15
    m.forget("ns/a")
    m.render()
    assert m.registry.get_sample_value("webhook_operator_dead_letters", labels) is None
