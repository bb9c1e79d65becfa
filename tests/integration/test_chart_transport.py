"""The chart's side of issue 13, finding 11 (transport): ``tls.secretName`` turns the intake + operations port into
HTTPS with the certificate mounted read-only from a Secret, and ``metricsAuth.existingSecret`` makes ``/metrics``
require that Secret's token — which the ServiceMonitor then presents (``bearerTokenSecret``). Rendered with the
real helm and parsed by the operator's own argument parser, so a flag the operator does not know fails here."""

from __future__ import annotations

from pathlib import Path

from integration.test_packaging import CHART, Helm, _container, _one, _parse_args, _pod

SETS = ("--set", "tls.secretName=wo-tls", "--set", "metricsAuth.existingSecret=wo-metrics",
        "--set", "metricsAuth.existingSecretKey=bearer", "--set", "serviceMonitor.enabled=true")  # fmt: skip


def test_plain_http_and_open_metrics_stay_the_default(helm: Helm) -> None:
    docs = helm.template("--set", "serviceMonitor.enabled=true")
    config = _parse_args(_container(docs))
    assert (config.tls_cert_file, config.tls_key_file, config.metrics_token_file) == (None, None, None)
    assert not {"tls", "metrics-token"} & {v["name"] for v in _pod(docs)["volumes"]}
    assert "bearerTokenSecret" not in _one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert all("appProtocol" not in p for p in _one(docs, "Service")["spec"]["ports"])


def test_tls_secret_and_metrics_token_are_mounted_and_passed(helm: Helm) -> None:
    docs = helm.template(*SETS)
    container = _container(docs)
    config = _parse_args(container)
    assert config.tls_cert_file == Path("/etc/webhook-operator/tls/tls.crt")
    assert config.tls_key_file == Path("/etc/webhook-operator/tls/tls.key")
    assert config.metrics_token_file == Path("/etc/webhook-operator/metrics/token")
    volumes = {v["name"]: v for v in _pod(docs)["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "wo-tls"
    assert volumes["tls"]["secret"]["items"] == [{"key": "tls.crt", "path": "tls.crt"},
                                                 {"key": "tls.key", "path": "tls.key"}]  # fmt: skip
    assert volumes["metrics-token"]["secret"]["secretName"] == "wo-metrics"
    assert volumes["metrics-token"]["secret"]["items"] == [{"key": "bearer", "path": "token"}]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tls"] == {"name": "tls", "mountPath": "/etc/webhook-operator/tls", "readOnly": True}
    assert mounts["metrics-token"] == {"name": "metrics-token", "mountPath": "/etc/webhook-operator/metrics",
                                       "readOnly": True}  # fmt: skip
    assert not any("subPath" in m for m in container["volumeMounts"])  # rotated Secrets must reach the files
    endpoint = _one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["bearerTokenSecret"] == {"name": "wo-metrics", "key": "bearer"}
    http = {p["name"]: p for p in _one(docs, "Service")["spec"]["ports"]}["http"]
    assert http["appProtocol"] == "https"
    # Probes stay plain HTTP on the metrics port, which stays open for them.
    assert container["livenessProbe"]["httpGet"].get("scheme", "HTTP") == "HTTP"


def test_schema_refuses_bad_transport_values(helm: Helm) -> None:
    for flag, complaint in [("tls.secretName=Not_A_Name", "does not match pattern"),
                            ("tls.certFile=x", "additional properties 'certFile' not allowed"),
                            ("metricsAuth.existingSecretKey=", "minLength")]:  # fmt: skip
        result = helm.run("lint", str(CHART), "--set", flag, check=False)
        assert result.returncode != 0 and complaint in result.stdout + result.stderr, (flag, result.stdout)
    lint = helm.run("lint", str(CHART), "--strict", *SETS)
    assert "[WARNING]" not in lint.stdout and "[ERROR]" not in lint.stdout, lint.stdout
