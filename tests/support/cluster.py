"""Access to the Kubernetes cluster the integration tests run against.

Either the project's own control plane (default) or, only when explicitly opted in, the cluster KUBECONFIG names.
Tests talk to it through real ``kubectl`` and the official Python client, never through mocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    kubectl_bin: Path
    local: bool  # True for the project's own control plane (loopback only)
    plane: Any = None  # the controlplane.cluster.ControlPlane when local (to stop/start the API server)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}\n{result.stdout}"
            )
        return result

    def apply(
        self, manifest: dict[str, Any] | str, *extra: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self.kubectl("apply", "-f", "-", *extra, input=text, check=check)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def create_namespace(self, prefix: str = "wo-test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {"webhook-operator.test": "true"}},
            }
        )
        return name

    def delete_namespace(self, name: str, timeout: float = 90) -> None:
        """Delete and wait until the namespace is really gone (the namespace controller finished)."""
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
        wait_for(
            lambda: self.kubectl("get", "namespace", name, check=False).returncode != 0,
            timeout,
            f"namespace {name} to disappear",
        )


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
