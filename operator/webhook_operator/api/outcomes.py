"""Per-webhook delivery state as the delivery engine reports it, shared by delivery (producer) and status
(consumer), which must not import each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from webhook_operator.api.webhook import WebhookState


class Reason:
    """CamelCase reasons for the Ready condition and Events."""

    DELIVERING = "Delivering"
    IDLE = "Idle"
    DELIVERY_FAILING = "DeliveryFailing"
    RETRY_LIMIT_REACHED = "RetryLimitReached"
    CONFIGURATION_ERROR = "ConfigurationError"
    DISABLED = "Disabled"


@dataclass(frozen=True)
class WebhookSnapshot:
    key: str  # namespace/name
    state: WebhookState
    reason: str
    message: str
    delivered: int
    failed: int
    pending: int
    last_successful_at: float | None = None
    last_failed_at: float | None = None
    last_failed_status_code: int | None = None
    last_failed_reason: str | None = None
    next_attempt_at: float | None = None
    oldest_pending_at: float | None = None

    @property
    def ready(self) -> bool:
        return self.state is WebhookState.ACTIVE


class StateObserver(Protocol):
    def webhook_changed(self, snapshot: WebhookSnapshot) -> None:
        """Called on every state or counter change; must be cheap (the status writer debounces)."""
        ...


class NullObserver:
    def webhook_changed(self, snapshot: WebhookSnapshot) -> None:
        return None
