"""The Webhook resource's ``status``: what the operator reports (it is never written by users).

Split from ``webhook`` (the spec) along who writes what: users write the spec, the operator's status writer writes
this, through the status subresource. ``webhook`` re-exports ``WebhookState`` and ``WebhookStatus`` so that
``api.webhook`` stays the one import for the whole resource.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from webhook_operator.api._model import EXTENSION, ResourceModel


class WebhookState(StrEnum):
    """Status of the webhook (the seed's ``status`` enum, reported in ``status.status``)."""

    ACTIVE = "active"
    DISABLED = "disabled"
    FAILED = "failed"
    AWAITING_RETRY = "awaitingRetry"
    RETRY_LIMIT_REACHED = "retryLimitReached"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ResourceModel):
    type: str = Field(description="Type of condition, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: datetime | None = Field(
        default=None, alias="lastTransitionTime", description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", description="metadata.generation this condition reflects."
    )


class FailureDetails(ResourceModel):
    last_failed_at: datetime | None = Field(default=None, alias="lastFailedAt", description="Timestamp of last failure")
    last_failed_status_code: int | None = Field(
        default=None, alias="lastFailedStatusCode", description="HTTP status code of last failure"
    )
    last_failed_reason: str | None = Field(
        default=None, alias="lastFailedReason", description="Reason for last failure"
    )
    next_attempt: datetime | None = Field(
        default=None, alias="nextAttempt", description="Timestamp of next retry attempt"
    )


class DeliveryCounts(ResourceModel):
    delivered: int = Field(default=0, ge=0, description="Events delivered successfully.")
    failed: int = Field(default=0, ge=0, description="Delivery attempts that failed.")
    pending: int = Field(default=0, ge=0, description="Events queued for delivery.")


class LastTest(ResourceModel):
    time: datetime = Field(description="When the test delivery was sent.")
    success: bool = Field(description="Whether the endpoint answered 2xx.")
    status_code: int | None = Field(default=None, alias="statusCode", description="HTTP status of the answer.")
    latency_ms: int = Field(default=0, ge=0, alias="latencyMs", description="Time to the answer, milliseconds.")
    error: str | None = Field(default=None, description="Why the test failed (secrets masked).")
    event_id: str | None = Field(default=None, alias="eventId", description="Id of the synthetic test event.")
    requested_by: str | None = Field(
        default=None, alias="requestedBy", description="Who asked: a user, or the manager of the annotation."
    )
    trigger: str | None = Field(
        default=None, description="The events.open-metadata.org/test annotation value that asked, if any."
    )


class HandledAnnotations(ResourceModel):
    """The last value of each operation annotation the operator acted on; a different value is a new request."""

    test: str | None = Field(default=None, description="Last handled events.open-metadata.org/test value.")
    resume: str | None = Field(default=None, description="Last handled events.open-metadata.org/resume value.")
    skip: str | None = Field(default=None, description="Last handled events.open-metadata.org/skip value.")
    redeliver: str | None = Field(default=None, description="Last handled events.open-metadata.org/redeliver value.")


class WebhookStatus(ResourceModel):
    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        description="metadata.generation last processed by the operator.",
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="kstatus conditions; Ready tells whether events are being delivered.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    status: WebhookState | None = Field(default=None, description="Status of the webhook")
    failure_details: FailureDetails | None = Field(
        default=None, alias="failureDetails", description="Details of webhook delivery failures"
    )
    last_successful_at: datetime | None = Field(
        default=None, alias="lastSuccessfulAt", description="Timestamp of the last successful delivery."
    )
    counts: DeliveryCounts | None = Field(
        default=None, description="Delivery counters since the webhook was registered with the operator."
    )
    last_test: LastTest | None = Field(
        default=None,
        alias="lastTest",
        description=EXTENSION + "Result of the last test delivery (annotation events.open-metadata.org/test, "
        "the operations API or kubectl webhook test).",
    )
    handled_annotations: HandledAnnotations | None = Field(
        default=None,
        alias="handledAnnotations",
        description=EXTENSION + "Operation annotations already acted on, so a restart does not repeat them.",
    )
