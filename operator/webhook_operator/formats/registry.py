"""Which Formatter renders which webhookType: one explicit table, so adding a type is one line here plus one
module, and a test checks that every WebhookType has exactly one entry (Flux's notifier factory, as a dict)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from webhook_operator.api.webhook import WebhookType
from webhook_operator.formats.base import FormatError, Formatter
from webhook_operator.formats.custom import CustomFormatter
from webhook_operator.formats.generic import GenericFormatter
from webhook_operator.formats.googlechat import GoogleChatFormatter
from webhook_operator.formats.msteams import MSTeamsFormatter
from webhook_operator.formats.slack import SlackFormatter

#: Formatters are stateless, so one shared instance per type is enough (read-only view).
REGISTRY: Mapping[WebhookType, Formatter] = MappingProxyType(
    {
        WebhookType.GENERIC: GenericFormatter(),
        WebhookType.SLACK: SlackFormatter(),
        WebhookType.MSTEAMS: MSTeamsFormatter(),
        WebhookType.GOOGLE_CHAT: GoogleChatFormatter(),
        WebhookType.CUSTOM: CustomFormatter(),
    }
)


def formatter_for(kind: WebhookType) -> Formatter:
    """The formatter for a webhookType. An unknown type raises FormatError (safe to show in status), naming the
    known ones, rather than a bare KeyError deep in the dispatcher."""
    try:
        return REGISTRY[kind]
    except (KeyError, TypeError):
        known = ", ".join(str(member) for member in REGISTRY)
        raise FormatError(f"no formatter for webhookType {kind!r}; known types: {known}") from None
