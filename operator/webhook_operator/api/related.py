"""Related webhooks in the Webhook spec (issue 14): ``spec.fallback`` and ``spec.triggers``.

The OpenMetadata seed names two relationships between webhooks — one is the *fallback for* another, one *triggers*
a downstream alert — as entity references. Here they name another Webhook of the same namespace, so whoever may
write a Webhook can only point it at webhooks they can already see. Seeing is not operating: the events bypass the
target's filters and go out with its secret, so the target must opt in (``acceptFrom``), as ``redeliver --to`` by
annotation is refused for the same reason. The delivery engine (``delivery.related``) resolves them and refuses
cycles.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from webhook_operator.api._model import EXTENSION, ResourceModel

#: A Kubernetes object name (RFC 1123 subdomain): what ``name`` may hold.
WEBHOOK_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class TriggerOn(StrEnum):
    """A delivery-state transition of a webhook that becomes an event for the webhooks it triggers."""

    #: active → awaitingRetry or failed: a delivery failed.
    FAILING = "failing"
    #: → retryLimitReached: the retry schedule is exhausted, delivery paused.
    RETRY_LIMIT_REACHED = "retryLimitReached"
    #: awaitingRetry / retryLimitReached / failed → active: delivering again.
    RECOVERED = "recovered"


class FallbackRef(ResourceModel):
    name: str = Field(
        description="Name of another Webhook in the same namespace that takes this webhook's events while it is "
        "stalled (retryLimitReached or failed).",
        min_length=1,
        max_length=253,
        pattern=WEBHOOK_NAME_PATTERN,
    )


class TriggerRef(ResourceModel):
    name: str = Field(
        description="Name of another Webhook in the same namespace that is sent this webhook's delivery-state "
        "transitions as events.",
        min_length=1,
        max_length=253,
        pattern=WEBHOOK_NAME_PATTERN,
    )
    on: list[TriggerOn] = Field(
        default_factory=lambda: list(TriggerOn),
        description="Transitions that trigger: failing, retryLimitReached, recovered (default: all three).",
        min_length=1,
        json_schema_extra={"maxItems": 3, "x-kubernetes-list-type": "set"},
    )


FALLBACK_DESCRIPTION = (
    EXTENSION + "Related webhook (the seed's 'fallback for'): when this webhook reaches retryLimitReached or fails "
    "permanently, its held batch and the events queued behind it, and new events while it stays so, go to this "
    "Webhook (same namespace) in order, through that webhook's format, secret and endpoint, without its filters. "
    "Resume or a successful test returns to this webhook's own endpoint. Used only if that Webhook lists this one "
    "in its spec.acceptFrom. Cycles (through fallbacks and triggers together) are refused."
)
#: An entry of ``acceptFrom``: a Webhook name, or ``*`` for every Webhook of the namespace.
ACCEPT_FROM_ITEM_PATTERN = r"^(\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$"
ACCEPT_FROM_ANY = "*"
ACCEPT_FROM_DESCRIPTION = (
    EXTENSION + "Names of the Webhooks in the same namespace that may hand events to this one through their "
    "spec.fallback or spec.triggers ('*': any Webhook of the namespace). Those events bypass this webhook's "
    "filters and go out signed with its secret, so the receiving webhook must opt in: without its name here, "
    "another Webhook's fallback or triggers naming this one are not used (its status says so). Withdrawing "
    "acceptance ends an active fallback: the source delivers to its own endpoint again; events already handed "
    "over stay here."
)
TRIGGERS_DESCRIPTION = (
    EXTENSION + "Related webhooks (the seed's 'triggers'): this webhook's own delivery-state transitions become "
    "events (webhookDeliveryFailing, webhookRetryLimitReached, webhookDeliveryRecovered) sent to these Webhooks "
    "(same namespace) through their formats, without their filters, if they list this one in their spec.acceptFrom. "
    "Cycles (through fallbacks and triggers together) are refused."
)

#: The event type of each transition's event, and the entity type those events carry.
TRIGGER_EVENT_TYPES: dict[TriggerOn, str] = {
    TriggerOn.FAILING: "webhookDeliveryFailing",
    TriggerOn.RETRY_LIMIT_REACHED: "webhookRetryLimitReached",
    TriggerOn.RECOVERED: "webhookDeliveryRecovered",
}
WEBHOOK_ENTITY_TYPE = "webhook"
