"""OpenMetadata drop-in compatibility end to end (issue 14, items 1 and 2): a receiver written against OpenMetadata
itself — it verifies ``X-OM-Signature`` (base64) and deserialises each body with OpenMetadata's own ``ChangeEvent``
model, extra keys forbidden — takes every matching sample event and the test delivery from a real operator."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from support.cluster import Cluster, wait_for
from support.events import event_files, raw
from support.operator import OperatorProcess, receiver, wait_status, webhook_status
from support.webhooks import manifest, webhook_secret

GROUP = "events.open-metadata.org"
SECRET = "om-receiver-secret-value"
LIFECYCLE = ("entityCreated", "entityUpdated", "entitySoftDeleted", "entityDeleted")


def om_receiver_accepts(body: bytes, headers: dict[str, str], model: Any) -> Any:
    """What a receiver written for OpenMetadata does: recompute ``X-OM-Signature`` and parse the body strictly."""
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    expected = "sha256=" + base64.b64encode(digest).decode()
    assert hmac.compare_digest(expected, headers["X-OM-Signature"]), "X-OM-Signature does not verify"
    return model.model_validate_json(body)


def test_an_openmetadata_receiver_accepts_every_sample_event(
    cluster: Cluster, namespace: str, operator: OperatorProcess, openmetadata_change_event: Any
) -> None:
    samples = [raw(int(p.name[:2])) for p in event_files()]
    expected = [s["id"] for s in samples if s["eventType"] in LIFECYCLE]
    with receiver() as recv:
        cluster.apply(webhook_secret("om-receiver", namespace, secret=SECRET), "-n", namespace)
        spec = {
            "webhookType": "Generic",
            "batchSize": 10,  # the shape is one event per request whatever batchSize says
            "eventFilters": [{"eventType": t, "entities": ["*"]} for t in LIFECYCLE],
            "webhookConfig": {
                "endpoint": recv.url("om"), "timeout": 5, "payloadShape": "openMetadataEvent",
                "signatureScheme": "OpenMetadataServer", "secretKeyRef": {"name": "om-receiver", "key": "secret"},
            },
        }  # fmt: skip
        cluster.apply(manifest("om", spec, namespace))
        wait_for(lambda: webhook_status(cluster, namespace, "om").get("status") == "active", 30, "om to be active")
        status, body = operator.post(samples)
        assert status == 202 and body["accepted"] == len(samples), body
        wait_status(cluster, namespace, "om", lambda s: s.get("counts", {}).get("delivered") == len(expected), 60)
        requests = recv.by_path("om")
        assert len(requests) == len(expected), "one request per event"
        parsed = [om_receiver_accepts(r.body, r.headers, openmetadata_change_event) for r in requests]
        assert [str(p.id.root) for p in parsed] == expected, "every matching event, in order"
        assert webhook_status(cluster, namespace, "om").get("counts", {}).get("failed") == 0

        cluster.kubectl("annotate", "--overwrite", "webhook/om", "-n", namespace, f"{GROUP}/test=1")
        wait_status(cluster, namespace, "om", lambda s: (s.get("lastTest") or {}).get("success") is True, 30)
        test_request = recv.by_path("om")[-1]
        test_event = om_receiver_accepts(test_request.body, test_request.headers, openmetadata_change_event)
        assert test_event.eventType.value == "entityNoChange" and test_event.entityType == "webhookTest"
        assert test_request.headers["X-Webhook-Operator-Test"] == "true"
