"""/metrics exposes the documented series with correct values after a scripted delivery run."""

from __future__ import annotations

import re

from support.cluster import Cluster, wait_for
from support.events import numbered
from support.operator import OperatorProcess, receiver, wait_status
from support.webhooks import base_spec, manifest


def _value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not exposed")


def test_metrics_after_a_scripted_run(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    with receiver(status_by_path={"/bad": 500}) as recv:
        good = {**base_spec(), "batchSize": 1}
        good["webhookConfig"] = {"endpoint": recv.url("good")}
        bad = {**base_spec(), "batchSize": 1}
        bad["webhookConfig"] = {"endpoint": recv.url("bad")}
        cluster.apply(manifest("good", good, namespace))
        cluster.apply(manifest("bad", bad, namespace))
        for name in ("good", "bad"):
            wait_status(cluster, namespace, name, lambda s: s.get("status") == "active")
        assert operator.post([numbered(i, "9000") for i in range(5)])[0] == 202
        assert operator.post([numbered(0, "9000")])[1]["duplicates"] == 1
        assert operator.post(None, raw=b"{broken")[0] == 400
        wait_status(cluster, namespace, "good", lambda s: s.get("counts", {}).get("delivered") == 5)
        # 300 ms x 3 retries: the bad webhook makes 4 attempts of its first event, then pauses with 5 queued.
        wait_status(cluster, namespace, "bad", lambda s: s.get("status") == "retryLimitReached")
        wait_for(lambda: _value(operator.metrics(), "webhook_operator_status_patches_total", result="ok") > 0, 30,
                 "status patches to be counted")  # fmt: skip
        text = operator.metrics()
        ns = namespace
        assert _value(text, "webhook_operator_deliveries_total", namespace=ns, webhook="good", outcome="delivered") == 5
        assert _value(text, "webhook_operator_deliveries_total", namespace=ns, webhook="bad", outcome="failed") == 4
        assert _value(text, "webhook_operator_retries_total", namespace=ns, webhook="bad") == 3
        assert _value(text, "webhook_operator_queue_depth", namespace=ns, webhook="bad") == 5
        assert _value(text, "webhook_operator_queue_depth", namespace=ns, webhook="good") == 0
        assert _value(text, "webhook_operator_oldest_pending_age_seconds", namespace=ns, webhook="bad") > 0
        assert _value(text, "webhook_operator_delivery_attempt_seconds_count", outcome="delivered") == 5
        assert _value(text, "webhook_operator_delivery_attempt_seconds_count", outcome="failed") == 4
        assert _value(text, "webhook_operator_intake_events_total", result="accepted") == 5
        assert _value(text, "webhook_operator_intake_events_total", result="duplicate") == 1
        assert _value(text, "webhook_operator_intake_events_total", result="rejected") == 1
        assert _value(text, "webhook_operator_intake_requests_total", code="202") == 2
        assert _value(text, "webhook_operator_intake_requests_total", code="400") == 1
        assert _value(text, "webhook_operator_status_patches_total", result="ok") >= 4
