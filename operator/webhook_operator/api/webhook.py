"""The Webhook custom resource: the spec as pydantic models (the status models are in ``webhook_status``).

These models are the single source of truth: the CRD in ``crds/`` is generated from them (``api.crd``), and the
operator parses every resource it receives through them, so the API server and the operator can never disagree on
a field name, default or enum. Descriptions are the OpenMetadata seed schema's own wording; fields the seed does not
have are marked "Extension". Kubernetes-only schema keywords (CEL rules, list types, bounds) ride along in
``json_schema_extra`` so that they live next to the field they constrain.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator

from webhook_operator.api._model import EXTENSION, ResourceModel
from webhook_operator.api.delivery_limits import DeliveryLimits, Ordering
from webhook_operator.api.encoding import compact_json
from webhook_operator.api.related import (
    ACCEPT_FROM_DESCRIPTION,
    ACCEPT_FROM_ITEM_PATTERN,
    FALLBACK_DESCRIPTION,
    TRIGGERS_DESCRIPTION,
    FallbackRef,
    TriggerRef,
)

# The status half of the resource, re-exported: ``api.webhook`` is the one import for the whole Webhook resource.
from webhook_operator.api.webhook_status import WebhookState as WebhookState
from webhook_operator.api.webhook_status import WebhookStatus as WebhookStatus

# RFC 9110 token: the characters allowed in an HTTP header field name.
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_HEADER_NAME = re.compile(HEADER_NAME_PATTERN)
_ENDPOINT = re.compile(r"^https?://[^\s/?#@]+(?:[/?#]\S*)?$", re.IGNORECASE)

MAX_BATCH_SIZE = 100
MAX_TIMEOUT_SECONDS = 300


class WebhookType(StrEnum):
    """Type of webhook."""

    GENERIC = "Generic"
    SLACK = "Slack"
    MSTEAMS = "MSTeams"
    GOOGLE_CHAT = "GoogleChat"
    CUSTOM = "Custom"


class EventType(StrEnum):
    """Type of event to subscribe to."""

    ENTITY_CREATED = "entityCreated"
    ENTITY_UPDATED = "entityUpdated"
    ENTITY_SOFT_DELETED = "entitySoftDeleted"
    ENTITY_DELETED = "entityDeleted"


class SignatureScheme(StrEnum):
    """How requests are signed when a secret is configured."""

    OPENMETADATA = "OpenMetadata"
    #: What OpenMetadata's own server sends (``X-OM-Signature``, base64), for receivers written against it.
    OPENMETADATA_SERVER = "OpenMetadataServer"
    STANDARD_WEBHOOKS = "StandardWebhooks"


class PayloadShape(StrEnum):
    """The body a Generic webhook (or a Custom one without a template) sends; see docs/formats.md."""

    #: The seed's payload object (batchSize 1) or the list document (batchSize > 1): today's default.
    SEED = "seed"
    #: Exactly the ChangeEvent as OpenMetadata's own generic publisher posts it: one event per request, no added keys.
    OPENMETADATA_EVENT = "openMetadataEvent"
    #: OpenMetadata's legacy list document ``{"data": [...], "paging": {...}}`` for every batch, batchSize 1 too.
    LIST = "list"


#: Largest ``spec.extension`` (compact JSON bytes): custom properties are labels, not documents, and every Webhook
#: object is read by every watch of it.
MAX_EXTENSION_BYTES = 16 * 1024

PAYLOAD_SHAPE_MESSAGE = (
    "webhookConfig.payloadShape other than seed is only allowed with webhookType Generic, or Custom without a "
    "payloadTemplate (the other formats have their own body)"
)

_STRING_LIST: dict[str, Any] = {
    "maxItems": 256,
    "items": {"type": "string", "minLength": 1, "maxLength": 512},
}


class EventFilter(ResourceModel):
    event_type: EventType = Field(alias="eventType", description="Type of event to subscribe to")
    entities: list[str] | None = Field(
        default=None,
        description="List of entities to filter (entity types such as table, dashboard, testCase; '*' for all). "
        "Omitted means all entity types.",
        json_schema_extra=_STRING_LIST,
    )
    include: list[str] | None = Field(
        default=None,
        description="Filters to include entities: changed-field names (tags, owner, description, ...) or "
        "qualifiers key:value (domain:Sales, tag:PII.Sensitive, owner:john.doe, fqn:glob*).",
        json_schema_extra=_STRING_LIST,
    )
    exclude: list[str] | None = Field(
        default=None,
        description="Filters to exclude entities, in the same vocabulary as include.",
        json_schema_extra=_STRING_LIST,
    )


class SecretKeySelector(ResourceModel):
    name: str = Field(description="Name of a Secret in the Webhook's namespace.", min_length=1, max_length=253)
    key: str = Field(description="Key within the Secret.", min_length=1, max_length=253)


class HeaderFromSecret(ResourceModel):
    name: str = Field(
        description="HTTP header name.",
        min_length=1,
        max_length=256,
        pattern=HEADER_NAME_PATTERN,
    )
    secret_key_ref: SecretKeySelector = Field(alias="secretKeyRef", description="Secret key holding the header value.")


class TlsConfig(ResourceModel):
    ca_bundle_secret_ref: SecretKeySelector | None = Field(
        default=None,
        alias="caBundleSecretRef",
        description="Secret key holding PEM CA certificates to trust for this endpoint, in addition to the "
        "system trust store.",
    )
    insecure_skip_verify: StrictBool = Field(
        default=False,
        alias="insecureSkipVerify",
        description="Do not verify the endpoint's certificate. Opt-in, for test endpoints only.",
    )


class WebhookConfig(ResourceModel):
    endpoint: str = Field(
        description="HTTP endpoint URL",
        min_length=1,
        max_length=2048,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "isURL(self) && url(self).getScheme() in ['http', 'https'] "
                    "&& url(self).getHostname() != ''",
                    "message": "endpoint must be an absolute http:// or https:// URL",
                }
            ]
        },
    )
    secret_key: str | None = Field(
        default=None,
        alias="secretKey",
        description="Secret key for HMAC signature. Prefer secretKeyRef: an inline secret lands in git.",
        max_length=4096,
    )
    secret_key_ref: SecretKeySelector | None = Field(
        default=None,
        alias="secretKeyRef",
        description=EXTENSION + "Secret key holding the HMAC signing secret (instead of the inline secretKey).",
    )
    send_to_admins: StrictBool = Field(
        default=False, alias="sendToAdmins", description="Send notifications to all admins"
    )
    send_to_owners: StrictBool = Field(
        default=False, alias="sendToOwners", description="Send notifications to entity owners"
    )
    send_to_followers: StrictBool = Field(
        default=False, alias="sendToFollowers", description="Send notifications to entity followers"
    )
    headers: dict[str, str] | None = Field(
        default=None,
        description="Custom headers to include in requests",
        json_schema_extra={
            "maxProperties": 64,
            "x-kubernetes-validations": [
                {
                    "rule": f'self.all(k, k.matches("{HEADER_NAME_PATTERN}"))',
                    "message": "header names must be HTTP tokens (letters, digits and !#$%&'*+.^_`|~-)",
                }
            ],
        },
    )
    headers_from: list[HeaderFromSecret] | None = Field(
        default=None,
        alias="headersFrom",
        description=EXTENSION + "Headers whose values come from Secrets (for tokens that must not be in git).",
        json_schema_extra={
            "maxItems": 64,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    timeout: StrictInt = Field(default=10, ge=1, le=MAX_TIMEOUT_SECONDS, description="Request timeout in seconds")
    payload_template: str | None = Field(
        default=None,
        alias="payloadTemplate",
        description=EXTENSION + "Jinja2 template (sandboxed) rendering the request body; webhookType Custom only.",
        max_length=65536,
    )
    signature_scheme: SignatureScheme = Field(
        default=SignatureScheme.OPENMETADATA,
        alias="signatureScheme",
        description=EXTENSION + "How requests are signed when a secret is set: OpenMetadata "
        "(X-OpenMetadata-Signature: sha256=<hex HMAC>, the seed's form), OpenMetadataServer "
        "(X-OM-Signature: sha256=<base64 HMAC>, what OpenMetadata's own server sends) or StandardWebhooks "
        "(webhook-id, webhook-timestamp, webhook-signature).",
    )
    payload_shape: PayloadShape = Field(
        default=PayloadShape.SEED,
        alias="payloadShape",
        description=EXTENSION + "Body of Generic webhooks (and Custom without a template): seed (the seed's payload, "
        "a list document when batchSize > 1), openMetadataEvent (the ChangeEvent exactly as OpenMetadata's generic "
        "publisher posts it, one event per request whatever batchSize says) or list (the legacy list document for "
        "every batch).",
    )
    tls: TlsConfig | None = Field(default=None, description=EXTENSION + "TLS options for https endpoints.")

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.secretKey) && has(self.secretKeyRef))",
                    "message": "secretKey and secretKeyRef are mutually exclusive: set one",
                    "fieldPath": ".secretKeyRef",
                }
            ]
        }
    )

    @field_validator("endpoint")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        if not _ENDPOINT.match(value):
            raise ValueError("endpoint must be an absolute http:// or https:// URL")
        return value

    @field_validator("headers")
    @classmethod
    def _header_tokens(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name in value or {}:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not an HTTP token")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookConfig:
        if self.secret_key is not None and self.secret_key_ref is not None:
            raise ValueError("secretKey and secretKeyRef are mutually exclusive: set one")
        return self


class EntityReference(ResourceModel):
    type: str = Field(description="Entity type of the referenced entity (user, team, domain, ...).", min_length=1)
    name: str | None = Field(default=None, description="Name of the entity instance.")
    id: str | None = Field(default=None, description="Unique identifier of the entity instance.")
    fully_qualified_name: str | None = Field(
        default=None, alias="fullyQualifiedName", description="Fully qualified name of the entity instance."
    )
    display_name: str | None = Field(
        default=None, alias="displayName", description="Display name of the entity instance."
    )


class TagLabel(ResourceModel):
    tag_fqn: str = Field(alias="tagFQN", description="Fully qualified name of the tag or glossary term.", min_length=1)
    source: str | None = Field(
        default=None,
        description="Classification or Glossary.",
        json_schema_extra={"enum": ["Classification", "Glossary"]},
    )
    label_type: str | None = Field(
        default=None,
        alias="labelType",
        description="Manual, Propagated, Automated or Derived.",
        json_schema_extra={"enum": ["Manual", "Propagated", "Automated", "Derived"]},
    )
    state: str | None = Field(
        default=None,
        description="Suggested or Confirmed.",
        json_schema_extra={"enum": ["Suggested", "Confirmed"]},
    )


class WebhookSpec(ResourceModel):
    display_name: str | None = Field(
        default=None, alias="displayName", description="Display name for the webhook", max_length=256
    )
    description: str | None = Field(default=None, description="Description of the webhook", max_length=65536)
    webhook_type: WebhookType = Field(alias="webhookType", description="Type of webhook")
    enabled: StrictBool = Field(default=True, description="Is the webhook enabled")
    batch_size: StrictInt = Field(
        default=10,
        alias="batchSize",
        ge=1,
        le=MAX_BATCH_SIZE,
        description="Maximum number of events to send in a batch",
    )
    event_filters: list[EventFilter] = Field(
        alias="eventFilters",
        min_length=1,
        description="Filters for events to trigger webhook",
        json_schema_extra={"maxItems": 64},
    )
    webhook_config: WebhookConfig = Field(alias="webhookConfig", description="Configuration for webhook endpoint")
    owner: EntityReference | None = Field(default=None, description="Owner of this webhook")
    tags: list[TagLabel] | None = Field(
        default=None, description="Tags for this webhook", json_schema_extra={"maxItems": 64}
    )
    domain: EntityReference | None = Field(default=None, description="Domain the webhook belongs to")
    extension: dict[str, Any] | None = Field(
        default=None,
        description="Custom properties of the webhook (OpenMetadata's entity extension): any JSON object, at most "
        f"{MAX_EXTENSION_BYTES // 1024} KiB as compact JSON; Custom templates see it as webhook.extension.",
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True, "maxProperties": 256},
    )
    delivery: DeliveryLimits | None = Field(
        default=None,
        description=EXTENSION + "Queue limits of this webhook (events over them go to the dead letters, kept for the "
        "retention period, redeliverable, with a Warning Event and status.failureDetails) and its delivery "
        "concurrency (ordering, maxInFlight).",
    )
    fallback: FallbackRef | None = Field(default=None, description=FALLBACK_DESCRIPTION)
    triggers: list[TriggerRef] | None = Field(
        default=None,
        description=TRIGGERS_DESCRIPTION,
        json_schema_extra={"maxItems": 16, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    accept_from: list[Annotated[str, Field(min_length=1, max_length=253, pattern=ACCEPT_FROM_ITEM_PATTERN)]] | None = (
        Field(
            default=None,
            alias="acceptFrom",
            description=ACCEPT_FROM_DESCRIPTION,
            json_schema_extra={"maxItems": 64, "x-kubernetes-list-type": "set"},
        )
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.webhookConfig.payloadTemplate) || self.webhookType == 'Custom'",
                    "message": "webhookConfig.payloadTemplate is only allowed with webhookType Custom",
                    "fieldPath": ".webhookConfig.payloadTemplate",
                },
                {
                    "rule": "!has(self.webhookConfig.payloadShape) || self.webhookConfig.payloadShape == 'seed' "
                    "|| self.webhookType == 'Generic' "
                    "|| (self.webhookType == 'Custom' && !has(self.webhookConfig.payloadTemplate))",
                    "message": PAYLOAD_SHAPE_MESSAGE,
                    "fieldPath": ".webhookConfig.payloadShape",
                },
            ]
        }
    )

    @field_validator("extension")
    @classmethod
    def _bounded_extension(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(compact_json(value)) > MAX_EXTENSION_BYTES:
            raise ValueError(f"extension is larger than {MAX_EXTENSION_BYTES // 1024} KiB as compact JSON")
        return value

    @model_validator(mode="after")
    def _template_only_for_custom(self) -> WebhookSpec:
        cfg = self.webhook_config
        if cfg.payload_template is not None and self.webhook_type is not WebhookType.CUSTOM:
            raise ValueError("webhookConfig.payloadTemplate is only allowed with webhookType Custom")
        if cfg.payload_shape is not PayloadShape.SEED and not self.generic_body:
            raise ValueError(PAYLOAD_SHAPE_MESSAGE)
        return self

    @property
    def generic_body(self) -> bool:
        """Whether requests carry the Generic body (Generic, or Custom without a template), which payloadShape picks."""
        custom_plain = self.webhook_type is WebhookType.CUSTOM and self.webhook_config.payload_template is None
        return self.webhook_type is WebhookType.GENERIC or custom_plain

    @property
    def delivery_ordering(self) -> Ordering:
        """``spec.delivery.ordering``, default ``webhook`` (the seed's one batch in flight, strict FIFO)."""
        return self.delivery.ordering if self.delivery is not None else Ordering.WEBHOOK

    @property
    def delivery_max_in_flight(self) -> int:
        """Batches in flight or held at once with ordering entity/none (``spec.delivery.maxInFlight``); 1 with
        ordering webhook, whatever the spec says."""
        if self.delivery is None or self.delivery.ordering is Ordering.WEBHOOK:
            return 1
        return self.delivery.max_in_flight

    @property
    def delivery_batch_size(self) -> int:
        """Events per request: ``batchSize``, except that the openMetadataEvent shape is one event per request (as
        OpenMetadata's publisher sends it). Each event is then its own attempt, so a failure never re-sends events
        a receiver already took, which grouping several requests into one attempt would."""
        if self.webhook_config.payload_shape is PayloadShape.OPENMETADATA_EVENT and self.generic_body:
            return 1
        return self.batch_size
