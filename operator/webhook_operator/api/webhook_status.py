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
    dead_letters: int | None = Field(
        default=None,
        ge=0,
        alias="deadLetters",
        description=EXTENSION + "Events of this webhook in the dead letters (moved there by the queue limits "
        "maxQueued/maxQueuedAge, or skipped); kept for the retention period and redeliverable.",
    )
    dead_lettered_since: datetime | None = Field(
        default=None, alias="deadLetteredSince", description=EXTENSION + "When the oldest of those was dead-lettered."
    )
    last_dead_letter_reason: str | None = Field(
        default=None,
        alias="lastDeadLetterReason",
        description=EXTENSION + "Why the queue limits last moved events to the dead letters.",
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


class FieldChange(ResourceModel):
    """One changed spec field, OpenMetadata's ``FieldChange``: values as JSON text, secrets shown as "(hidden)"."""

    name: str = Field(description="Dotted path of the spec field, e.g. webhookConfig.endpoint.")
    old_value: str | None = Field(default=None, alias="oldValue", description="Previous value as JSON text.")
    new_value: str | None = Field(default=None, alias="newValue", description="New value as JSON text.")


class SpecChangeDescription(ResourceModel):
    """What the last spec change changed, as OpenMetadata's ``changeDescription`` of an entity version."""

    fields_added: list[FieldChange] = Field(default_factory=list, alias="fieldsAdded", description="Fields added.")
    fields_updated: list[FieldChange] = Field(
        default_factory=list, alias="fieldsUpdated", description="Fields whose value changed."
    )
    fields_deleted: list[FieldChange] = Field(
        default_factory=list, alias="fieldsDeleted", description="Fields removed."
    )
    omitted_changes: int | None = Field(
        default=None, alias="omittedChanges", description="Changes not listed (more than 32 of one kind)."
    )
    previous_version: float | None = Field(
        default=None, alias="previousVersion", description="The version this change started from."
    )


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
    version: float | None = Field(
        default=None,
        description="The entity's version in OpenMetadata's notation: 0.1 when created, +0.1 per spec change "
        "(metadata.generation / 10).",
    )
    updated_at: datetime | None = Field(
        default=None, alias="updatedAt", description="When the spec was last changed (its field manager's write)."
    )
    updated_by: str | None = Field(
        default=None,
        alias="updatedBy",
        description="Field manager of the last spec change (metadata.managedFields), e.g. kubectl-client-side-apply "
        "or argocd-controller: the client that wrote it, not a person.",
    )
    fallback_active: bool | None = Field(
        default=None,
        alias="fallbackActive",
        description=EXTENSION + "Whether spec.fallback has taken over this webhook's events (set when spec.fallback "
        "is).",
    )
    fallback_reason: str | None = Field(
        default=None,
        alias="fallbackReason",
        description=EXTENSION + "Why the fallback is active and where the events go.",
    )
    change_description: SpecChangeDescription | None = Field(
        default=None,
        alias="changeDescription",
        description="What the last spec change changed (secret values hidden), with previousVersion.",
    )
