"""One batch of events for one webhook → the signed HTTP request that carries it.

Shared by regular deliveries (the dispatcher) and test deliveries (``delivery.operations``), so a test goes through
exactly the format, headers and signature a real delivery would.

Two steps: ``render_in_pool`` renders a Custom webhook's template in a worker process (``delivery.template_pool``:
off the event loop, under time and memory limits), and ``build_request`` assembles the request, rendering every
other format inline (pure and bounded, so no process hop on their hot path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookType
from webhook_operator.delivery import signing
from webhook_operator.delivery.sender import Request
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.delivery.template_pool import TemplatePool
from webhook_operator.formats.base import FormatError, RenderContext, Rendered
from webhook_operator.formats.custom import template_variables
from webhook_operator.formats.registry import formatter_for

#: Render contexts by target object (a target is immutable; re-registration makes a new one). Bounded by clearing:
#: the entry is rebuilt in a couple of microseconds, and the process holds about one target per webhook.
_CONTEXTS: dict[int, tuple[WebhookTarget, RenderContext]] = {}
_CONTEXTS_SIZE = 20_000


def render_context(target: WebhookTarget) -> RenderContext:
    """The target's ``RenderContext``, built once per target object rather than once per request."""
    entry = _CONTEXTS.get(id(target))
    if entry is not None and entry[0] is target:
        return entry[1]
    if len(_CONTEXTS) >= _CONTEXTS_SIZE:
        _CONTEXTS.clear()
    context = _build_context(target)
    _CONTEXTS[id(target)] = (target, context)  # the target is held, so its id() cannot be reused meanwhile
    return context


def _build_context(target: WebhookTarget) -> RenderContext:
    cfg = target.spec.webhook_config
    return RenderContext(
        webhook_name=target.name, webhook_type=target.spec.webhook_type,
        batch_size=target.spec.delivery_batch_size, payload_template=cfg.payload_template,
        payload_shape=cfg.payload_shape, send_to_admins=cfg.send_to_admins,
        send_to_owners=cfg.send_to_owners, send_to_followers=cfg.send_to_followers, admins=target.admins,
        ui_base_url=target.ui_base_url, extension=target.spec.extension,
    )  # fmt: skip


def has_template(target: WebhookTarget) -> bool:
    """Whether the target's body comes from a template (Custom with ``payloadTemplate``): rendered in the pool."""
    return target.spec.webhook_type is WebhookType.CUSTOM and target.spec.webhook_config.payload_template is not None


async def render_in_pool(target: WebhookTarget, events: Sequence[ChangeEvent], pool: TemplatePool) -> Rendered:
    """The target's template rendered by a worker. Raises ``FormatError`` (naming the limit when one was hit)."""
    context = render_context(target)
    if context.payload_template is None:
        raise FormatError("no payloadTemplate to render")
    tenant = target.key.rpartition("/")[0]  # the namespace: the pool's fairness is per namespace
    return await pool.render(context.payload_template, template_variables(events, context), tenant=tenant)


def build_request(target: WebhookTarget, events: Sequence[ChangeEvent], delivery_id: str, now: float, *,
                  user_agent: str, extra_headers: Mapping[str, str] | None = None,
                  rendered: Rendered | None = None) -> Request:  # fmt: skip
    """Render (unless ``rendered`` is given: a template's output from ``render_in_pool``), add the configured
    headers, sign. Raises ``FormatError`` when the payload cannot be rendered."""
    cfg = target.spec.webhook_config
    if rendered is None:
        rendered = formatter_for(target.spec.webhook_type).render(events, render_context(target))
    headers = {"Content-Type": rendered.content_type, "User-Agent": user_agent}
    headers.update(target.headers())
    headers["X-Webhook-Delivery-Id"] = delivery_id
    if len(events) == 1:
        headers["X-OpenMetadata-Event-Id"] = events[0].id
    headers.update(extra_headers or {})
    headers.update(signing.signature_headers(cfg.signature_scheme, target.secrets, delivery_id, rendered.body, now))
    return Request(cfg.endpoint, rendered.body, headers, float(cfg.timeout), target.ca_bundle,
                   cfg.tls.insecure_skip_verify if cfg.tls else False)  # fmt: skip
