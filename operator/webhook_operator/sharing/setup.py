"""Work sharing assembled for one operator process: who this replica is, where it answers, and its parts."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from webhook_operator.sharing.claim import StatusClaim
from webhook_operator.sharing.forward import Forwarder, peer_tls
from webhook_operator.sharing.manager import Lanes, LeaseManager
from webhook_operator.sharing.metrics import LeaseMetrics
from webhook_operator.store.base import LeaseStore


def replica_id(configured: str, environ: Mapping[str, str] | None = None) -> str:
    """``--replica-id``, else the pod's name (``POD_NAME`` from the downward API), else ``<hostname>-<pid>``:
    unique per running process, which is all a lease needs (a restarted pod is a new holder either way)."""
    environ = os.environ if environ is None else environ
    return configured or environ.get("POD_NAME", "").strip() or f"{socket.gethostname()}-{os.getpid()}"


def advertise_address(configured: str, intake_port: int, environ: Mapping[str, str] | None = None) -> str | None:
    """``--advertise-address``, else ``POD_IP`` (the downward API) with the intake's port; None when neither is
    known (operations on webhooks this replica delivers are then answered 503 elsewhere, never misrouted)."""
    environ = os.environ if environ is None else environ
    if configured:
        return configured
    ip = environ.get("POD_IP", "").strip()
    if not ip:
        return None
    return f"[{ip}]:{intake_port}" if ":" in ip else f"{ip}:{intake_port}"


@dataclass
class Sharing:
    leases: LeaseManager
    claim: StatusClaim
    forwarder: Forwarder

    @classmethod
    def build(cls, store: LeaseStore, lanes: Lanes, *, replica: str, lease_duration: float, address: str | None,
              tls_cert_file: Path | None, registry: CollectorRegistry,
              forget: Callable[[str], None] | None = None) -> Sharing:  # fmt: skip
        leases = LeaseManager(store, lanes, replica=replica, lease_duration=lease_duration, address=address,
                              metrics=LeaseMetrics(registry), forget=forget)  # fmt: skip
        return cls(leases, StatusClaim(store, leases), Forwarder(leases, tls=peer_tls(tls_cert_file)))

    async def start(self) -> None:
        await self.leases.start()

    async def stop(self) -> None:
        """After the lanes closed: give every lease up so the others take over at once."""
        await self.leases.leave()
        await self.forwarder.close()
