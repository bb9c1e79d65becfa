"""The Webhook's own history and custom properties on a real API server and operator (issue 14, items 4 and 5):
``status.version`` / ``updatedAt`` / ``updatedBy`` / ``changeDescription`` after two ``kubectl apply`` edits, secrets
never shown, and ``spec.extension`` round-tripping and reaching a Custom template."""

from __future__ import annotations

import copy
import json
from typing import Any

from support.cluster import Cluster, wait_for
from support.events import raw
from support.operator import OperatorProcess, receiver, wait_status, webhook_status
from support.webhooks import manifest, single_spec

EXTENSION = {"costCenter": "CC-2040", "oncall": {"team": "finance-data", "rotation": ["ana", "bo"]}}


def test_version_and_change_description_follow_kubectl_apply_edits(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with receiver() as recv:
        spec: dict[str, Any] = single_spec(recv.url("hist"), secretKey="inline-secret-one")
        cluster.apply(manifest("hist", spec, namespace))
        created = wait_status(cluster, namespace, "hist", lambda s: s.get("version") == 0.1)
        assert created["updatedBy"] == "kubectl-client-side-apply" and "changeDescription" not in created

        first = copy.deepcopy(spec)
        first["batchSize"] = 5
        first["webhookConfig"]["secretKey"] = "inline-secret-two"
        cluster.apply(manifest("hist", first, namespace))
        edited = wait_status(cluster, namespace, "hist", lambda s: s.get("version") == 0.2)
        change = edited["changeDescription"]
        assert change["previousVersion"] == 0.1
        assert {"name": "batchSize", "oldValue": "1", "newValue": "5"} in change["fieldsUpdated"]
        assert {"name": "webhookConfig.secretKey", "oldValue": "(hidden)", "newValue": "(hidden)"} in change[
            "fieldsUpdated"
        ]

        second = copy.deepcopy(first)
        second["description"] = "finance alerts"
        del second["webhookConfig"]["secretKey"]
        cluster.apply(manifest("hist", second, namespace))
        again = wait_status(cluster, namespace, "hist", lambda s: s.get("version") == 0.3)
        change = again["changeDescription"]
        assert change["previousVersion"] == 0.2
        assert change["fieldsAdded"] == [{"name": "description", "newValue": '"finance alerts"'}]
        assert change["fieldsDeleted"] == [{"name": "webhookConfig.secretKey", "oldValue": "(hidden)"}]
        assert again["updatedAt"] >= edited["updatedAt"]
        whole = json.dumps(cluster.get_json("webhook", "hist", "-n", namespace)["status"])
        assert "inline-secret" not in whole, "a secret value reached status"
        printed = cluster.kubectl("get", "webhook", "hist", "-n", namespace, "-o", "wide").stdout
        assert "0.3" in printed.splitlines()[1]


def test_extension_round_trips_and_reaches_a_custom_template(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with receiver() as recv:
        spec = single_spec(
            recv.url("ext"),
            payloadTemplate='{"cc": {{ webhook.extension.costCenter | tojson }}, '
            '"event": {{ event.eventId | tojson }}}',
        )
        spec["webhookType"] = "Custom"
        spec["extension"] = EXTENSION
        cluster.apply(manifest("ext", spec, namespace))
        stored = cluster.get_json("webhook", "ext", "-n", namespace)["spec"]["extension"]
        assert stored == EXTENSION
        wait_for(lambda: webhook_status(cluster, namespace, "ext").get("status") == "active", 30, "ext to be active")
        status, body = operator.post([raw(1)])
        assert status == 202, body
        wait_for(lambda: len(recv.by_path("ext")) == 1, 30, "the templated request")
        assert recv.by_path("ext")[0].json() == {"cc": "CC-2040", "event": raw(1)["id"]}
