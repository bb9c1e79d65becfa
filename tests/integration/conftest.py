"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.cluster import Cluster, wait_for
from support.webhooks import CRD_FILE


@pytest.fixture(scope="session")
def webhook_crd(cluster: Cluster) -> Iterator[None]:
    """The Webhook CRD installed, established and served (once per session)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    cluster.kubectl("wait", "--for=condition=Established", "crd/webhooks.events.open-metadata.org", "--timeout=60s")
    wait_for(
        lambda: "webhooks" in cluster.kubectl("api-resources", "--api-group=events.open-metadata.org").stdout,
        30,
        "webhooks to be served",
    )
    yield


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The helm binary built from its Go module (cached like the control plane), with a private home; the suite fails
    when it cannot be built."""
    from controlplane.build import BuildError, ensure_helm
    from integration.test_packaging import Helm

    try:
        binary = ensure_helm()
    except BuildError as exc:
        pytest.fail(f"helm is unavailable: {exc}", pytrace=False)
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))
