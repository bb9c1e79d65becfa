"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

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
