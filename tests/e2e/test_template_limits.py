"""Issue 13, finding 1, end to end: one tenant's Custom template cannot stop the operator for everyone.

The reproduction from the issue, on the real operator and control plane: a Custom Webhook whose template nests two
``range(100000)`` loops gets a ``test`` annotation and real events. Before the fix ``/healthz`` and the intake timed
out for as long as anyone watched; now the template renders in a worker that is killed at the time limit, so
``/healthz`` answers within a second throughout, another Webhook keeps receiving its events, and the hostile
Webhook's status names the limit it hit."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from support.cluster import Cluster, wait_for
from support.events import numbered
from support.operator import OperatorProcess, receiver, wait_status
from support.webhooks import manifest, single_spec

GROUP = "events.open-metadata.org"
NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}done"
TIME_LIMIT = "payloadTemplate: exceeded the time limit (2 s)"


class HealthProbe:
    """GET /healthz every 100 ms from a thread, each with a 1 s timeout; records latencies and failures."""

    def __init__(self, operator: OperatorProcess) -> None:
        self.url = f"http://127.0.0.1:{operator.health_port}/healthz"
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=1) as resp:
                    resp.read()
                    if resp.status != 200:
                        self.failures.append(f"HTTP {resp.status}")
            except (urllib.error.URLError, OSError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.latencies.append(time.monotonic() - started)
            self._stop.wait(0.1)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


def annotate(cluster: Cluster, namespace: str, name: str, operation: str, value: str) -> None:
    cluster.kubectl("annotate", "--overwrite", f"webhook/{name}", "-n", namespace, f"{GROUP}/{operation}={value}")


def test_a_hostile_template_neither_stalls_health_nor_intake_and_its_status_names_the_limit(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with receiver() as recv:
        cluster.apply(manifest("good", single_spec(recv.url("good")), namespace))
        hostile = single_spec(recv.url("hostile"), payloadTemplate=NESTED_LOOPS)
        hostile["webhookType"] = "Custom"
        cluster.apply(manifest("hostile", hostile, namespace))
        benign = single_spec(recv.url("templated"), payloadTemplate='{"id": {{ event.eventId | tojson }}}')
        benign["webhookType"] = "Custom"
        cluster.apply(manifest("templated", benign, namespace))
        for name in ("good", "hostile", "templated"):
            wait_status(cluster, namespace, name, lambda s: s.get("status") == "active")

        with HealthProbe(operator) as probe:
            annotate(cluster, namespace, "hostile", "test", "1")
            started = time.monotonic()
            code, _ = operator.post([numbered(i, "8130") for i in range(3)])
            assert code == 202 and time.monotonic() - started < 5
            wait_for(lambda: len(recv.events("good")) == 3, 30, "the good Webhook's events")
            # Another tenant's template renders in the same pool, unharmed.
            wait_for(lambda: len(recv.by_path("templated")) == 3, 30, "the benign template's events")
            assert sorted(r.json()["id"] for r in recv.by_path("templated")) == [
                numbered(i, "8130")["id"] for i in range(3)
            ]

            last_test = wait_status(cluster, namespace, "hostile", lambda s: "lastTest" in s)["lastTest"]
            assert last_test["success"] is False and TIME_LIMIT in last_test["error"], last_test
            status = wait_status(
                cluster, namespace, "hostile", lambda s: TIME_LIMIT in json.dumps(s.get("failureDetails"))
            )
            assert status["status"] != "active", status

            # The workers were killed and replaced: the intake and the good Webhook carry on.
            started = time.monotonic()
            code, _ = operator.post([numbered(i, "8131") for i in range(3)])
            assert code == 202 and time.monotonic() - started < 5
            wait_for(lambda: len(recv.events("good")) == 6, 30, "the good Webhook's later events")
            time.sleep(1)

        assert recv.by_path("hostile") == [], "the hostile template produced a request"
        assert probe.failures == [], probe.failures
        assert len(probe.latencies) > 10 and max(probe.latencies) < 1.0, max(probe.latencies)
