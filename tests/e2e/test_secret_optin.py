"""Issue 13, finding 2 (confused deputy on Secrets), on the real control plane with the real operator.

A tenant who may create Webhooks but not read Secrets named a database Secret in ``headersFrom`` and received the
password as a header at its own endpoint. Now a Secret is used only when it carries the opt-in label
``events.open-metadata.org/webhook-secret: "true"``: unlabelled, the Webhook shows a configuration error naming the
Secret, the key and the label, and the value is never sent; labelled, it works; unlabelled again, it stops.
"""

from __future__ import annotations

import time

from support.cluster import Cluster, wait_for
from support.events import numbered
from support.operator import OperatorProcess, ThreadedReceiver, receiver, wait_status
from support.webhooks import SECRET_LABEL, manifest, single_spec

PASSWORD = "db-password-4f1c9e"  # a tenant's database password


def _ready_message(status: dict[str, object]) -> str:
    conditions = status.get("conditions") or []
    assert isinstance(conditions, list)
    return str(next((c.get("message", "") for c in conditions if c.get("type") == "Ready"), ""))


def _leaked(recv: ThreadedReceiver, path: str) -> list[str]:
    return [r.headers.get("X-Db", "") for r in recv.by_path(path) if PASSWORD in r.headers.get("X-Db", "")]


def test_unlabelled_secret_is_a_config_error_then_opt_in_then_opt_out(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.kubectl("create", "secret", "generic", "db", "-n", namespace, f"--from-literal=password={PASSWORD}")
    with receiver() as recv:
        spec = single_spec(
            recv.url("exfil"), headersFrom=[{"name": "X-Db", "secretKeyRef": {"name": "db", "key": "password"}}]
        )
        cluster.apply(manifest("exfil", spec, namespace))
        wait_status(cluster, namespace, "exfil", lambda s: s.get("observedGeneration") == 1)
        assert operator.post([numbered(1)])[0] == 202
        # The attack: on the old code the password arrives at the tenant's endpoint within a second.
        time.sleep(2)
        assert not _leaked(recv, "exfil"), "the value of an unlabelled Secret was sent"
        failed = wait_status(cluster, namespace, "exfil", lambda s: s.get("status") == "failed")
        message = _ready_message(failed)
        assert f"Secret {namespace}/db" in message and "'password'" in message and SECRET_LABEL in message, message
        assert PASSWORD not in str(failed)

        # Opt in: the held event goes out with the header.
        cluster.kubectl("label", "secret", "db", "-n", namespace, f"{SECRET_LABEL}=true")
        cluster.kubectl("wait", "--for=condition=Ready", "webhook/exfil", "-n", namespace, "--timeout=30s")
        wait_for(lambda: len(recv.by_path("exfil")) == 1, 30, "the held event after the opt-in")
        assert recv.by_path("exfil")[0].headers["X-Db"] == PASSWORD

        # Opt out: the watch sees the label go; the Webhook fails and nothing more is sent with the value.
        cluster.kubectl("label", "secret", "db", "-n", namespace, f"{SECRET_LABEL}-")
        failed = wait_status(cluster, namespace, "exfil", lambda s: s.get("status") == "failed")
        assert SECRET_LABEL in _ready_message(failed)
        assert operator.post([numbered(2)])[0] == 202
        time.sleep(2)
        assert len(recv.by_path("exfil")) == 1, "a Secret that lost its label was still used"

        # A label with another value is no opt-in either.
        cluster.kubectl("label", "secret", "db", "-n", namespace, f"{SECRET_LABEL}=yes")
        time.sleep(1.5)
        assert len(recv.by_path("exfil")) == 1
        assert wait_status(cluster, namespace, "exfil", lambda s: True).get("status") == "failed"
    log = operator.tail(2000)
    assert PASSWORD not in log
