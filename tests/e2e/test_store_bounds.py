"""Store bounds on the real operator (issue 13, finding 4): a Webhook whose receiver always fails keeps at most
``spec.delivery.maxQueued`` events; the rest go to the dead letters, status and a Warning Event say so, and the
intake keeps accepting. And a store over ``--store-max-bytes`` answers 507 naming the budget, with the size and the
budget on /metrics, before the volume is full.

Before: the failing Webhook queued all 20 (and would have queued until the 1Gi volume was full, after which the
intake answered 503 to everyone)."""

from __future__ import annotations

import json
from pathlib import Path

from support.cluster import Cluster
from support.events import numbered
from support.operator import OperatorProcess, receiver, wait_status
from support.webhooks import manifest, single_spec


def test_a_failing_webhook_keeps_max_queued_and_dead_letters_the_rest(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with receiver(status_by_path={"/failing": 503}) as recv:
        spec = single_spec(recv.url("failing"))
        spec["delivery"] = {"maxQueued": 5}
        cluster.apply(manifest("bounded", spec, namespace))
        wait_status(cluster, namespace, "bounded", lambda s: s.get("status") == "active")
        assert operator.post([numbered(0, "8400")])[0] == 202
        # the first event is the held batch from here on: it is retried and never dead-lettered
        wait_status(cluster, namespace, "bounded", lambda s: s.get("status") in {"awaitingRetry", "retryLimitReached"})
        for i in range(1, 20):
            status, body = operator.post([numbered(i, "8400")])
            assert status == 202 and body["accepted"] == 1, (status, body)  # the intake keeps accepting
        final = wait_status(
            cluster, namespace, "bounded",
            lambda s: (s.get("failureDetails") or {}).get("deadLetters") == 15 and s["counts"]["pending"] == 5,
        )  # fmt: skip
        details = final["failureDetails"]
        assert details["deadLetteredSince"].endswith("Z")
        assert "maxQueued 5" in details["lastDeadLetterReason"] and "dead letters" in details["lastDeadLetterReason"]
        events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                 "involvedObject.name=bounded", "-o", "json").stdout  # fmt: skip
        warnings = [e for e in json.loads(events)["items"] if e["reason"] == "QueueLimitExceeded"]
        assert warnings and warnings[0]["type"] == "Warning" and "maxQueued 5" in warnings[0]["message"], warnings
        series = f'webhook_operator_dead_letters{{namespace="{namespace}",webhook="bounded"}} 15.0'
        assert series in operator.metrics()
        # the receiver comes back: the held event first, then the four newest kept, in order
        fixed = {**spec, "webhookConfig": {**spec["webhookConfig"], "endpoint": recv.url("fixed")}}
        cluster.apply(manifest("bounded", fixed, namespace))
        done = wait_status(cluster, namespace, "bounded", lambda s: s.get("counts", {}).get("delivered") == 5)
        assert [e["eventId"] for e in recv.events("fixed")] == [numbered(i, "8400")["id"] for i in (0, 16, 17, 18, 19)]
        assert done["counts"]["pending"] == 0 and done["failureDetails"]["deadLetters"] == 15


def test_over_its_space_budget_the_store_refuses_with_507_and_says_so_on_metrics(
    cluster: Cluster, crd: None, namespace: str, tmp_path: Path
) -> None:
    process = OperatorProcess(cluster, tmp_path, [namespace], store_max_bytes="256KiB").start()
    try:
        statuses: list[int] = []
        body: dict[str, object] = {}
        for i in range(300):  # ~2 KB per event, 10 per post: far more than 256 KiB on offer
            status, body = process.post([numbered(i * 10 + j, "8500") for j in range(10)])
            statuses.append(status)
            if status != 202:
                break
        assert statuses[0] == 202 and statuses[-1] == 507, statuses[-3:]
        assert "space budget" in str(body["error"]) and "256 KiB" in str(body["error"]), body
        metrics = process.metrics()
        assert "webhook_operator_store_budget_bytes 262144.0" in metrics
        used = next(line for line in metrics.splitlines() if line.startswith("webhook_operator_store_bytes "))
        assert float(used.split()[1]) >= 262144, used
        assert process.ready(), "the operator itself is fine: only new events wait"
    finally:
        code = process.stop()
        assert code == 0 and "Traceback" not in process.tail(200), process.tail()
