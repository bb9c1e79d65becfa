"""Custom: the Generic payload, or the output of the webhook's ``payloadTemplate`` (a sandboxed Jinja2 template).

Without a template the body is exactly Generic's (same shapes for batchSize 1 and > 1). With one, the template
sees:

* ``events``: the batch as Generic per-event objects (``eventId``, ``eventType``, ``entity`` as an object, …,
  ``recipients`` when a sendTo* flag is set), in delivery order;
* ``event``: ``events[0]``, convenient with batchSize 1;
* ``webhook_name``: the Webhook's name;
* ``recipients``: everyone concerned by the batch, ``{"owners": [...], "followers": [...], "admins": [...]}``
  (references ``{"type", "name", "id"}``, deduplicated), empty lists when no sendTo* flag is set;
* the filter ``tojson``: compact JSON, non-ASCII kept raw (Jinja's own HTML-escapes ``<``, ``>``, ``&``, ``'``,
  which would corrupt strings in a JSON body).

The environment is a ``SandboxedEnvironment`` (no ``__class__``/``__globals__`` tricks, no unsafe calls),
autoescape off (the output is JSON or text, not HTML), ``StrictUndefined`` (a typo fails loudly instead of sending
an empty value). ``*`` and ``**`` are intercepted so ``'x' * 10**9`` cannot exhaust memory, and output is capped at
MAX_OUTPUT_CHARS.

Content type: ``application/json`` when the output parses as JSON, else ``text/plain; charset=utf-8``; the body is
the output as written, UTF-8 encoded. Every failure (syntax, undefined variable, sandbox violation, runtime error)
becomes a FormatError naming the template line: "payloadTemplate line 3: unexpected '}'". The operator calls
``compile_template`` at reconcile time so a broken template is reported in status before any event is due.
"""

from __future__ import annotations

import json
import operator
import traceback
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from webhook_operator.api.encoding import compact_json_text
from webhook_operator.api.events import ChangeEvent
from webhook_operator.formats._common import batch_recipients, require_events
from webhook_operator.formats.base import FormatError, RenderContext, Rendered
from webhook_operator.formats.payload import event_payload, generic_body

TEMPLATE_NAME = "payloadTemplate"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
#: Largest body a template may produce (characters); far above any sane webhook body.
MAX_OUTPUT_CHARS = 5_000_000
#: Largest string/list a ``*`` may build and largest exponent ``**`` may use inside a template.
MAX_REPEAT_LENGTH = 1_000_000
MAX_EXPONENT = 1000
#: Distinct templates kept compiled (one per Custom webhook with a template, typically).
CACHE_SIZE = 128


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
            return operator.pow(left, right)
        for sequence, times in ((left, right), (right, left)):
            repeats = isinstance(sequence, str | list | tuple) and isinstance(times, int)
            if repeats and len(sequence) * times > MAX_REPEAT_LENGTH:
                raise SecurityError(f"repeating a sequence to more than {MAX_REPEAT_LENGTH} items is not allowed")
        return operator.mul(left, right)


def _tojson(value: Any) -> str:
    return compact_json_text(value)


_ENVIRONMENT = _Sandbox(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
_ENVIRONMENT.filters["tojson"] = _tojson


def _template_line(exc: BaseException) -> int | None:
    """The template line an error happened on: TemplateSyntaxError carries it, runtime errors carry it in the
    traceback frames Jinja rewrites to point at the template source."""
    if isinstance(exc, TemplateSyntaxError) and exc.lineno:
        return exc.lineno
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == "<template>"]
    return lines[-1] if lines else None


def _format_error(exc: BaseException) -> FormatError:
    message = exc.message if isinstance(exc, TemplateError) and exc.message else str(exc) or type(exc).__name__
    line = _template_line(exc)
    where = f"{TEMPLATE_NAME} line {line}" if line else TEMPLATE_NAME
    kind = "" if isinstance(exc, TemplateError) else f"{type(exc).__name__}: "
    return FormatError(f"{where}: {kind}{message}")


@lru_cache(maxsize=CACHE_SIZE)
def _compiled(source: str) -> Template:
    try:
        return _ENVIRONMENT.from_string(source)
    except TemplateSyntaxError as exc:
        raise _format_error(exc) from None


def compile_template(source: str) -> None:
    """Check that ``source`` compiles (raising FormatError with the line if not) and cache it for rendering."""
    _compiled(source)


def render_template(source: str, variables: dict[str, Any]) -> str:
    template = _compiled(source)
    chunks: list[str] = []
    size = 0
    try:
        for chunk in template.generate(**variables):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise FormatError(f"{TEMPLATE_NAME}: output is larger than {MAX_OUTPUT_CHARS} characters")
            chunks.append(chunk)
    except FormatError:
        raise
    except Exception as exc:  # any failure inside a user's template is that template's error, never a crash
        raise _format_error(exc) from None
    return "".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _is_json(text: str) -> bool:
    try:
        json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return False
    return True


class CustomFormatter:
    def render(self, events: Sequence[ChangeEvent], ctx: RenderContext) -> Rendered:
        require_events(events)
        if ctx.payload_template is None:
            return Rendered(body=generic_body(events, ctx), content_type="application/json")
        payloads = [event_payload(event, ctx) for event in events]
        variables = {
            "events": payloads,
            "event": payloads[0],
            "webhook_name": ctx.webhook_name,
            "recipients": batch_recipients(events, ctx).as_json(),
        }
        output = render_template(ctx.payload_template, variables)
        try:
            body = output.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate written by the template ("\ud800")
            raise FormatError(f"{TEMPLATE_NAME}: output is not valid Unicode text: {exc.reason}") from None
        content_type = "application/json" if _is_json(output) else TEXT_CONTENT_TYPE
        return Rendered(body=body, content_type=content_type)
