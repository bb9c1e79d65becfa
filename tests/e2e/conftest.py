"""End-to-end fixtures: the CRD installed, one operator process per test watching that test's namespace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cluster import Cluster, wait_for
from support.operator import OperatorProcess
from support.webhooks import CRD_FILE


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    cluster.kubectl("wait", "--for=condition=Established", "crd/webhooks.events.open-metadata.org", "--timeout=60s")
    wait_for(lambda: "webhooks" in cluster.kubectl("api-resources", "--api-group=events.open-metadata.org").stdout,
             30, "webhooks to be served")  # fmt: skip


@pytest.fixture
def operator(cluster: Cluster, crd: None, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster, tmp_path, [namespace]).start()
    yield process
    code = process.stop()
    log = process.tail(200)
    assert "Traceback" not in log, f"the operator logged an exception:\n{log}"
    assert code == 0, f"operator exited with {code}:\n{process.tail()}"
