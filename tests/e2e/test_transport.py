"""Issue 13, findings 8 and 11 on the real operator process and the real control plane: the intake + operations
port serves HTTPS (``--tls-cert-file``/``--tls-key-file``) and the ``kubectl webhook`` plugin works with the CA,
``/metrics`` requires its token (``--metrics-token-file``) while the probes stay open, and a client guessing tokens
is answered 429 after its burst, with real TokenReviews behind it."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.cluster import Cluster
from support.events import numbered
from support.operator import TOKEN, OperatorProcess, receiver, wait_status
from support.tls import self_signed
from support.webhooks import manifest, single_spec

PLUGIN = Path(sys.executable).parent / "kubectl-webhook"
GROUP = "events.open-metadata.org"
METRICS_TOKEN = "e2e-metrics-token-9876543210"


@pytest.fixture
def tls_operator(cluster: Cluster, crd: None, namespace: str, tmp_path: Path) -> Iterator[tuple[OperatorProcess, Path]]:
    cert, key = self_signed(tmp_path)
    (tmp_path / "metrics-token").write_text(METRICS_TOKEN + "\n")
    process = OperatorProcess(cluster, tmp_path, [namespace], tls_cert_file=str(cert), tls_key_file=str(key),
                              metrics_token_file=str(tmp_path / "metrics-token")).start()  # fmt: skip
    yield process, cert
    code = process.stop()
    log = process.tail(200)
    assert "Traceback" not in log, f"the operator logged an exception:\n{log}"
    assert code == 0, f"operator exited with {code}:\n{process.tail()}"


def reader_token(cluster: Cluster, namespace: str) -> str:
    """A ServiceAccount that may ``get`` the test namespace's Webhooks (the delivery log)."""
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "reader", "namespace": namespace},
                   "rules": [{"apiGroups": [GROUP], "resources": ["webhooks"], "verbs": ["get"]}]})  # fmt: skip
    cluster.kubectl("create", "rolebinding", "reader", "--role=reader", f"--serviceaccount={namespace}:reader",
                    "-n", namespace)  # fmt: skip
    return cluster.kubectl("create", "token", "reader", "-n", namespace, "--duration=10m").stdout.strip()


def plugin(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_OPERATOR_")}
    env["KUBECONFIG"] = str(cluster.kubeconfig)
    return subprocess.run([str(PLUGIN), *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_https_intake_and_operations_with_the_plugin_and_a_metrics_token(
    cluster: Cluster, namespace: str, tls_operator: tuple[OperatorProcess, Path]
) -> None:
    operator, ca = tls_operator
    https = f"https://127.0.0.1:{operator.intake_port}"
    token = reader_token(cluster, namespace)
    trusted = ssl.create_default_context(cafile=str(ca))
    with receiver() as recv, httpx.Client(verify=trusted, trust_env=False, timeout=30) as client:
        cluster.apply(manifest("hook", single_spec(recv.url("hook")), namespace))
        wait_status(cluster, namespace, "hook", lambda s: s.get("status") == "active")
        posted = client.post(f"{https}/api/v1/events", json=[numbered(1, "7100")],
                             headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert posted.status_code == 202, posted.text
        wait_status(cluster, namespace, "hook", lambda s: s.get("counts", {}).get("delivered") == 1)

        # The plugin over HTTPS with the operator's CA; the user's token only ever travels encrypted.
        args = ["deliveries", "hook", "-n", namespace, "--server", https, "--token", token, "-o", "json"]
        ok = plugin(cluster, *args, "--certificate-authority", str(ca))
        assert ok.returncode == 0 and '"outcome": "delivered"' in ok.stdout, ok.stderr
        untrusted = plugin(cluster, *args)
        assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted.stderr
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer at all
            httpx.get(f"http://127.0.0.1:{operator.intake_port}/api/v1/openapi.json", timeout=10)

        # /metrics needs the token; the probes do not.
        health = f"http://127.0.0.1:{operator.health_port}"
        denied = httpx.get(f"{health}/metrics", timeout=10)
        assert denied.status_code == 401 and namespace not in denied.text
        wrong = httpx.get(f"{health}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        allowed = httpx.get(f"{health}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
        assert allowed.status_code == 200 and f'namespace="{namespace}"' in allowed.text
        assert httpx.get(f"{health}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{health}/readyz", timeout=10).status_code == 200

        # Guessing tokens: real TokenReviews until the client's burst is spent, then 429 without a review.
        path = f"{https}/api/v1/namespaces/{namespace}/webhooks/hook/deliveries"
        statuses = [client.get(path, headers={"Authorization": f"Bearer guess-{i}"}).status_code for i in range(40)]
        assert set(statuses) == {401, 429} and statuses[0] == 401, statuses
        limited = client.get(path, headers={"Authorization": "Bearer guess-x"})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "too many" in limited.json()["error"]
