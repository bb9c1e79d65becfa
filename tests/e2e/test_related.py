"""Related webhooks end to end (issue 14): ``spec.fallback`` taking over a stalled webhook's events and handing
back, and ``spec.triggers`` telling a Slack-format webhook when another one fails and recovers — the real operator
on the real control plane, real receivers on loopback (the operator runs with a 300 ms retry schedule)."""

from __future__ import annotations

import json
import re
from typing import Any

from support.cluster import Cluster, wait_for
from support.events import numbered
from support.operator import OperatorProcess, receiver, wait_status
from support.webhooks import manifest, single_spec

GROUP = "events.open-metadata.org"


def _quiet(spec: dict[str, Any]) -> dict[str, Any]:
    """A webhook subscribed to nothing the tests send: whatever it receives came from a related webhook."""
    spec["eventFilters"] = [{"eventType": "entitySoftDeleted", "entities": ["glossary"]}]
    return spec


def _reasons(cluster: Cluster, namespace: str, name: str) -> set[str]:
    out = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
                          "-o", "json").stdout  # fmt: skip
    return {e["reason"] for e in json.loads(out)["items"]}


def test_fallback_takes_over_in_order_and_hands_back_on_a_successful_test(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with receiver(status_by_path={"/primary": 503}) as recv:
        primary = single_spec(recv.url("primary"))
        primary["fallback"] = {"name": "backup"}
        backup = _quiet(single_spec(recv.url("backup")))
        backup["acceptFrom"] = ["primary"]  # the target opts in
        cluster.apply(manifest("backup", backup, namespace))
        cluster.apply(manifest("primary", primary, namespace))
        for name in ("primary", "backup"):
            wait_status(cluster, namespace, name, lambda s: s.get("status") == "active")

        ids = [numbered(i, "8100")["id"] for i in range(6)]
        assert operator.post([numbered(i, "8100") for i in range(4)])[0] == 202
        active = wait_status(cluster, namespace, "primary", lambda s: s.get("fallbackActive") is True)
        assert active["status"] == "retryLimitReached" and "events go to " in active["fallbackReason"]
        wait_for(lambda: len(recv.events("backup")) == 4, 30, "the held batch and the queue at the fallback")
        assert operator.post([numbered(4, "8100")])[0] == 202  # routed to primary: goes to backup meanwhile
        wait_for(lambda: len(recv.events("backup")) == 5, 30, "a new event at the fallback")
        assert [e["eventId"] for e in recv.events("backup")] == ids[:5], "held batch first, then the rest, in order"
        assert recv.events("primary") == [], "the receiver records 2xx answers only: primary delivered nothing"

        wide = cluster.kubectl("get", "webhook", "primary", "-n", namespace, "-o", "wide").stdout
        header, row = wide.splitlines()[:2]
        assert "FALLBACK" in header and "FALLBACK ACTIVE" in header and "backup" in row and "true" in row, wide
        described = cluster.kubectl("describe", "webhook", "primary", "-n", namespace).stdout
        assert re.search(r"Fallback Active:\s+true", described) and re.search(r"Fallback:\s+Name:\s+backup", described)
        assert {"FallbackActivated"} <= _reasons(cluster, namespace, "primary")

        # The endpoint works again; a successful test delivery hands back.
        recv.receiver.status_by_path.pop("/primary")
        cluster.kubectl("annotate", "--overwrite", "webhook/primary", "-n", namespace, f"{GROUP}/test=1")
        back = wait_status(cluster, namespace, "primary", lambda s: s.get("fallbackActive") is False)
        assert back["status"] == "active" and "fallbackReason" not in back
        assert operator.post([numbered(5, "8100")])[0] == 202
        wait_for(lambda: ids[5] in [e.get("eventId") for e in recv.events("primary")], 30, "delivery to primary")
        real = [e["eventId"] for e in recv.events("primary") if e.get("eventType") != "webhookTest"]
        assert real == [ids[5]], "after the hand-back primary delivers only the new event"
        assert [e["eventId"] for e in recv.events("backup")] == ids[:5], "nothing delivered to both"
        assert "FallbackEnded" in _reasons(cluster, namespace, "primary")


def test_a_trigger_tells_a_slack_webhook_on_failure_and_on_recovery(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with receiver(status_by_path={"/pagerduty": 503}) as recv:
        pagerduty = single_spec(recv.url("pagerduty"))
        pagerduty["triggers"] = [{"name": "ops-slack", "on": ["failing", "retryLimitReached", "recovered"]}]
        slack = _quiet(single_spec(recv.url("slack")))
        slack["webhookType"] = "Slack"
        slack["acceptFrom"] = ["pagerduty"]
        cluster.apply(manifest("ops-slack", slack, namespace))
        cluster.apply(manifest("pagerduty", pagerduty, namespace))
        for name in ("pagerduty", "ops-slack"):
            wait_status(cluster, namespace, name, lambda s: s.get("status") == "active")

        assert operator.post([numbered(0, "8200")])[0] == 202
        wait_status(cluster, namespace, "pagerduty", lambda s: s.get("status") == "retryLimitReached")
        wait_for(lambda: len(recv.by_path("slack")) == 2, 30, "failing and retryLimitReached messages")
        texts = [r.json()["text"] for r in recv.by_path("slack")]
        error = "HTTP 503 Service Unavailable"
        assert texts == [
            f"Webhook {namespace}.pagerduty is failing: {error}",
            f"Webhook {namespace}.pagerduty reached its retry limit (delivery paused): {error}",
        ], texts

        recv.receiver.status_by_path.pop("/pagerduty")
        cluster.kubectl("annotate", "--overwrite", "webhook/pagerduty", "-n", namespace, f"{GROUP}/resume=1")
        wait_for(lambda: len(recv.by_path("slack")) == 3, 30, "the recovered message")
        assert recv.by_path("slack")[2].json()["text"] == f"Webhook {namespace}.pagerduty recovered (delivering again)"
        wait_status(cluster, namespace, "pagerduty", lambda s: s.get("status") == "active")
        for request in recv.by_path("slack"):
            assert "/pagerduty" not in request.body.decode(), "never the endpoint's path, only its host"


def test_a_target_that_does_not_accept_gets_nothing_and_the_source_says_so(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    """Whoever may patch only ``tenant`` cannot push its events (past ops-slack's filters, under ops-slack's secret)
    or its receiver's error text into ``ops-slack``: ops-slack has not listed tenant in its acceptFrom."""
    with receiver(status_by_path={"/tenant": 503}) as recv:
        tenant = single_spec(recv.url("tenant"))
        tenant["fallback"] = {"name": "ops-slack"}
        tenant["triggers"] = [{"name": "ops-slack"}]
        slack = _quiet(single_spec(recv.url("slack")))
        slack["webhookType"] = "Slack"
        slack["acceptFrom"] = ["someone-else"]
        cluster.apply(manifest("ops-slack", slack, namespace))
        cluster.apply(manifest("tenant", tenant, namespace))
        missing = f"{namespace}/ops-slack does not accept fallback or trigger events from tenant: add tenant to " \
                  f"{namespace}/ops-slack's spec.acceptFrom"  # fmt: skip
        status = wait_status(cluster, namespace, "tenant", lambda s: missing in s["conditions"][0]["message"])
        assert status["status"] == "active"

        assert operator.post([numbered(0, "8300")])[0] == 202
        stalled = wait_status(cluster, namespace, "tenant", lambda s: s.get("status") == "retryLimitReached")
        assert stalled.get("fallbackActive") is not True and missing in stalled["conditions"][0]["message"]
        wait_for(lambda: "RelatedWebhookNotAccepted" in _reasons(cluster, namespace, "tenant"), 30, "a Warning Event")
        assert recv.by_path("slack") == [], "neither the events nor the trigger messages reached ops-slack"
