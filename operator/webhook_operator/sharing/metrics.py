"""The work-sharing series on ``/metrics``: how many webhooks this replica delivers, and how leases moved."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class LeaseMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.owned = Gauge("webhook_operator_webhooks_owned", "Webhooks this replica delivers now (holds the lease "
                           "of).", registry=r)  # fmt: skip
        self.acquisitions = Counter("webhook_operator_lease_acquisitions", "Webhook leases this replica acquired "
                                    "(new ownership, each with a new fencing token).", registry=r)  # fmt: skip
        self.takeovers = Counter("webhook_operator_lease_takeovers", "Acquisitions of webhooks whose previous "
                                 "owner left the live set (died, stopped, lost the database).", registry=r)  # fmt: skip
        self.losses = Counter("webhook_operator_lease_losses", "Leases this replica lost without giving them up "
                              "(expired: paused, partitioned, or another replica took them).", registry=r)  # fmt: skip
