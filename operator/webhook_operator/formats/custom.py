"""Custom: the Generic payload, or the output of the webhook's ``payloadTemplate`` (a sandboxed Jinja2 template).

Without a template the body is exactly Generic's (same shapes for batchSize 1 and > 1). With one, the template
sees:

* ``events``: the batch as Generic per-event objects (``eventId``, ``eventType``, ``entity`` as an object, …,
  ``recipients`` when a sendTo* flag is set), in delivery order;
* ``event``: ``events[0]``, convenient with batchSize 1;
* ``webhook_name``: the Webhook's name;
* ``webhook``: ``{"name": ..., "extension": {...}}``, the Webhook's custom properties (``spec.extension``, ``{}``
  when it has none): for routing keys, team names or anything else the receiver's body needs per Webhook;
* ``recipients``: everyone concerned by the batch, ``{"owners": [...], "followers": [...], "admins": [...]}``
  (references ``{"type", "name", "id"}``, deduplicated), empty lists when no sendTo* flag is set;
* the filter ``tojson``: compact JSON, non-ASCII kept raw (Jinja's own HTML-escapes ``<``, ``>``, ``&``, ``'``,
  which would corrupt strings in a JSON body).

The environment is ``formats.template_sandbox``: a ``SandboxedEnvironment`` (no ``__class__``/``__globals__``
tricks, no unsafe calls), autoescape off (the output is JSON or text, not HTML), ``StrictUndefined`` (a typo fails
loudly instead of sending an empty value), and every operation, method and filter that can build a large string
(``*``, ``%``, ``center``, ``format``, ``join``, …) checks the size first; output is capped at MAX_OUTPUT_CHARS while
it is produced.

Where it runs: deliveries and tests render a template in a worker process (``delivery.template_pool``: time,
memory and CPU limits, off the event loop); ``CustomFormatter.render`` below renders in this process, for callers
that hold no pool (unit tests, tools). ``template_variables`` is what both give the template.

Content type: ``application/json`` when the output parses as JSON, else ``text/plain; charset=utf-8``; the body is
the output as written, UTF-8 encoded. Every failure (syntax, undefined variable, sandbox violation, size limit,
runtime error, a template nested too deeply to compile) becomes a FormatError naming the template line:
"payloadTemplate line 3: unexpected '}'". The operator checks that a template compiles at reconcile time so a
broken template is reported in status before any event is due.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from webhook_operator.api.events import ChangeEvent
from webhook_operator.formats._common import batch_recipients, require_events
from webhook_operator.formats.base import FormatError, RenderContext, Rendered
from webhook_operator.formats.payload import event_payload, generic_body
from webhook_operator.formats.template_sandbox import (
    TEMPLATE_NAME,
    TEXT_CONTENT_TYPE,
    TemplateFailure,
    body_of,
    compiled,
    location,
    render,
)  # fmt: skip

__all__ = ["TEMPLATE_NAME", "TEXT_CONTENT_TYPE", "CustomFormatter", "compile_template", "template_variables"]


def compile_template(source: str) -> None:
    """Check that ``source`` compiles (raising FormatError with the line if not) and cache it for rendering.
    Every exception is a FormatError, RecursionError and MemoryError included."""
    try:
        compiled(source)
    except TemplateFailure as exc:
        raise FormatError(str(exc)) from None
    except MemoryError:
        raise FormatError(f"{TEMPLATE_NAME}: exceeded the memory limit while compiling") from None


def render_template(source: str, variables: dict[str, Any]) -> str:
    """Render in this process (sandboxed and size-bounded, but without the worker's time and memory limits)."""
    try:
        return render(source, variables)
    except TemplateFailure as exc:
        raise FormatError(str(exc)) from None
    except MemoryError as exc:
        raise FormatError(f"{location(exc)}: exceeded the memory limit") from None


def template_variables(events: Sequence[ChangeEvent], ctx: RenderContext) -> dict[str, Any]:
    """What a template sees (the module docstring lists it): plain JSON data, so it can cross to a worker."""
    require_events(events)
    payloads = [event_payload(event, ctx) for event in events]
    return {
        "events": payloads,
        "event": payloads[0],
        "webhook_name": ctx.webhook_name,
        "webhook": {"name": ctx.webhook_name, "extension": dict(ctx.extension or {})},
        "recipients": batch_recipients(events, ctx).as_json(),
    }


class CustomFormatter:
    def render(self, events: Sequence[ChangeEvent], ctx: RenderContext) -> Rendered:
        require_events(events)
        if ctx.payload_template is None:
            return Rendered(body=generic_body(events, ctx), content_type="application/json")
        output = render_template(ctx.payload_template, template_variables(events, ctx))
        try:
            body, content_type = body_of(output)
        except TemplateFailure as exc:
            raise FormatError(str(exc)) from None
        return Rendered(body=body, content_type=content_type)
