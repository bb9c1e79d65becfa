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
    dead_letters: int = 0  # dead letters of the webhook still kept (retention removes them)
    dead_lettered_since: float | None = None  # when the oldest of them was dead-lettered
    dead_letter_reason: str | None = None  # why events were last dead-lettered by the queue limits
    overflowed: int = 0  # events the queue limits dead-lettered since this process registered the webhook
    fallback_configured: bool = False  # spec.fallback names a webhook
    fallback_to: str | None = None  # the fallback is active: events go to this webhook (namespace/name)
    warnings: tuple[str, ...] = ()  # e.g. a related-webhook cycle that was refused (appended to the Ready message)

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
