"""Control-plane tooling fails loudly and clearly: missing Go, refused modules, taken ports, version-keyed cache."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from controlplane import build, versions
from controlplane.cluster import ControlPlaneError, check_port_free, free_port


def test_missing_go_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(build.BuildError, match=r"Go is not installed.*Go >= 1\.24"):
        build._go()


def test_proxy_refusal_names_the_module() -> None:
    output = (
        "go: downloading k8s.io/kubernetes v1.37.2\n"
        "go: k8s.io/kubernetes@v1.37.2: reading https://proxy.example/k8s.io/kubernetes/@v/v1.37.2.zip: "
        "403 Forbidden\n"
    )
    message = build._explain_go_failure("go build", output)
    assert "did not serve k8s.io/kubernetes@v1.37.2" in message
    assert "403 Forbidden" in message


def test_taken_port_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ControlPlaneError, match=rf"kube-apiserver: port 127\.0\.0\.1:{port} is already in use"):
            check_port_free(port, "kube-apiserver")
    check_port_free(free_port(), "etcd")


def test_cache_is_keyed_by_versions_and_pins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WEBHOOK_OPERATOR_CACHE", str(tmp_path))
    first = versions.bin_dir()
    assert first.is_relative_to(tmp_path)
    assert versions.KUBERNETES_VERSION in first.parent.name and versions.ETCD_VERSION in first.parent.name
    monkeypatch.setattr(versions, "K8S_MODULE_DIR", tmp_path)
    (tmp_path / "go.mod").write_text("module changed\n")
    assert versions.bin_dir() != first
