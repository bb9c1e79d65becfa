"""`make cluster-up` / `make cluster-down` (python -m controlplane up|down): a background control plane with a
kubeconfig at a known path, stopped without leaving a process behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.webhooks import ROOT


def _controlplane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controlplane", *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "hack")}, check=False)  # fmt: skip


def test_up_writes_a_working_kubeconfig_and_down_leaves_nothing(tmp_path: Path) -> None:
    from controlplane.build import kubectl_path

    state = tmp_path / "cluster"
    up = _controlplane("up", "--dir", str(state))
    assert up.returncode == 0, up.stderr + up.stdout
    assert f"export KUBECONFIG={state / 'kubeconfig'}" in up.stdout
    pid = int((state / "supervisor.pid").read_text())
    try:
        assert _controlplane("up", "--dir", str(state)).stdout.startswith("control plane already running")
        ready = subprocess.run([str(kubectl_path()), f"--kubeconfig={state / 'kubeconfig'}", "get", "--raw", "/readyz"],
                               capture_output=True, text=True, check=False)  # fmt: skip
        assert ready.stdout.strip() == "ok", ready.stderr
        assert _controlplane("status", "--dir", str(state)).stdout.strip() == "running"
    finally:
        down = _controlplane("down", "--dir", str(state))
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not Path(f"/proc/{pid}").exists(), "the supervisor is gone"
    children = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True, check=False).stdout
    workdir = (state / "workdir").read_text() if (state / "workdir").exists() else "nonexistent-workdir"
    leftovers = subprocess.run(["pgrep", "-f", workdir], capture_output=True, text=True, check=False).stdout
    assert not children.strip() and not leftovers.strip(), "no etcd/apiserver/controller-manager left running"
    assert _controlplane("status", "--dir", str(state)).returncode == 1
