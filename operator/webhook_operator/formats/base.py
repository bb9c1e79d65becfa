"""The one protocol every format implements, and the context a render needs.

Flux's notifiers both build and send; here building is separate, so every format is unit-tested on bytes alone
and the dispatcher owns all I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import PayloadShape, WebhookType


class FormatError(Exception):
    """A batch could not be rendered (e.g. a Custom template failed). The message is safe to show in status:
    it never contains secrets, and names the template line where there is one."""


@dataclass(frozen=True)
class RenderContext:
    """What a format may know about the webhook it renders for. Secrets are deliberately absent."""

    webhook_name: str
    webhook_type: WebhookType
    batch_size: int = 1
    payload_template: str | None = None
    #: The Generic body's shape (Generic, and Custom without a template); the chat formats ignore it.
    payload_shape: PayloadShape = PayloadShape.SEED
    send_to_admins: bool = False
    send_to_owners: bool = False
    send_to_followers: bool = False
    admins: tuple[str, ...] = ()
    #: Base URL of the OpenMetadata UI for entity links (operator configuration); None means FQN text only.
    ui_base_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    #: The webhook's custom properties (``spec.extension``), for Custom templates as ``webhook.extension``.
    extension: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Rendered:
    body: bytes
    content_type: str = "application/json"


class Formatter(Protocol):
    def render(self, events: Sequence[ChangeEvent], ctx: RenderContext) -> Rendered:
        """Render a non-empty, ordered batch as one HTTP request body. Raise FormatError on failure."""
        ...
