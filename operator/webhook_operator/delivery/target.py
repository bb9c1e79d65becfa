"""A webhook as the delivery engine needs it: the validated spec plus resolved secrets, ready to send.

The operator resolves Secrets; the engine never reads Kubernetes. Secret values sit in ``secrets`` and
``secret_headers`` only, and ``sensitive_values`` lists everything that must be masked in logs and status.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from webhook_operator.api.webhook import WebhookSpec

MASK = "***"


@dataclass(frozen=True)
class WebhookTarget:
    key: str  # "namespace/name": queue and status identity
    spec: WebhookSpec
    #: Signing secrets, current first (more than one during a key rotation).
    secrets: tuple[str, ...] = ()
    #: Header values resolved from Secrets (headersFrom); merged over spec headers at send time.
    secret_headers: Mapping[str, str] = field(default_factory=dict)
    ca_bundle: str | None = None
    #: A configuration problem no retry can fix (missing Secret, template that does not compile): state failed.
    config_error: str | None = None
    admins: tuple[str, ...] = ()
    ui_base_url: str | None = None

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def sensitive_values(self) -> tuple[str, ...]:
        inline = (self.spec.webhook_config.secret_key,) if self.spec.webhook_config.secret_key else ()
        values = (*self.secrets, *self.secret_headers.values(), *inline)
        return tuple(v for v in values if len(v) >= 4)  # masking 1-3 chars would shred unrelated text

    def headers(self) -> dict[str, str]:
        merged = dict(self.spec.webhook_config.headers or {})
        merged.update(self.secret_headers)
        return merged

    def delivery_shape(self) -> tuple[object, ...]:
        """What decides how a batch is sent: a change here is a new configuration, which resumes a paused
        webhook. Labels, annotations or an identical re-registration are not."""
        return (self.spec.model_dump(mode="json"), self.secrets, tuple(sorted(self.secret_headers.items())),
                self.ca_bundle, self.config_error)  # fmt: skip


def mask(text: str | None, secrets: Iterable[str]) -> str | None:
    """Replace every occurrence of a secret (e.g. echoed back in a response body) with ***."""
    if not text:
        return text
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


_BEARER = re.compile(r"(?i)(authorization|x-api-key|token)([\"':= ]+)((?:bearer|basic|token)\s+)?([^\s\"',}]+)")


def mask_credentials(text: str) -> str:
    """Belt and braces for text we do not control (receiver error pages): hide anything credential-shaped."""
    return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{MASK}", text)
