"""The Jinja2 sandbox Custom templates run in: compile (cached), render with the output capped as it is produced,
and turn every failure into a ``TemplateFailure`` naming the template line.

On top of Jinja's ``SandboxedEnvironment`` (no ``__class__``/``__globals__`` tricks, no unsafe calls), every
operation, method and filter that can build a large string or list checks its size *before* allocating
(``formats.template_bounds``): ``"x"|center(10**9)`` is refused, not built. ``range`` stays capped at Jinja's
MAX_RANGE (100,000). What those checks cannot see (a string doubled by ``~`` in a loop, a list of shared references
serialised) is stopped by the worker process's address-space limit (``delivery.template_pool``): the checks are the
first defence, the process limits the backstop.

Deliberately free of pydantic and of the rest of the operator: the template worker process imports only this
module (and Jinja), so it starts fast and small under its memory limit. ``formats.custom`` and the pool turn
``TemplateFailure`` into ``FormatError``.
"""

from __future__ import annotations

import json
import traceback
import types
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError
from jinja2.exceptions import TemplateError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from webhook_operator.api.encoding import compact_json_text
from webhook_operator.formats.template_bounds import (
    BINOPS,
    FILTERS,
    MAX_OUTPUT_CHARS,
    OUTPUT_LIMIT,
    bounded_format,
    bounded_method,
)

__all__ = ["MAX_OUTPUT_CHARS", "TemplateFailure", "body_of", "compiled", "location", "render"]

TEMPLATE_NAME = "payloadTemplate"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
#: Distinct templates kept compiled (one per Custom webhook with a template, typically).
CACHE_SIZE = 128
NESTED_TOO_DEEPLY = f"{TEMPLATE_NAME}: the template is nested too deeply (Python's recursion limit)"


class TemplateFailure(Exception):
    """A template could not be compiled or rendered; the message is safe for status and names the line."""


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset(BINOPS)

    def call_binop(self, context: Context, operator_name: str, left: Any, right: Any) -> Any:
        return BINOPS[operator_name](left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., Any] | None:
        """Called by the sandbox on every attribute a template reads: size-building methods of strings and lists
        come back bounded (whether the template calls them or passes them on), ``format``/``format_map`` through a
        formatter whose widths are bounded."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType):
            return None
        owner, name = getattr(value, "__self__", None), value.__name__
        if name in ("format", "format_map") and isinstance(owner, str):
            return bounded_format(self, value, owner, name == "format_map")
        return bounded_method(value, owner, name)


def _tojson(value: Any) -> str:
    return compact_json_text(value)


ENVIRONMENT = _Sandbox(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
ENVIRONMENT.filters.update(FILTERS)
ENVIRONMENT.filters["tojson"] = _tojson


# -- compile, render, errors -----------------------------------------------------------------------------------------


def location(exc: BaseException) -> str:
    """``payloadTemplate line N`` where the error happened (syntax errors carry the line; runtime errors carry it
    in the traceback frames Jinja rewrites to point at the template source), else ``payloadTemplate``."""
    line = exc.lineno if isinstance(exc, TemplateSyntaxError) else None
    if not line:
        lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == "<template>"]
        line = lines[-1] if lines else None
    return f"{TEMPLATE_NAME} line {line}" if line else TEMPLATE_NAME


def failure(exc: BaseException) -> TemplateFailure:
    message = exc.message if isinstance(exc, TemplateError) and exc.message else str(exc) or type(exc).__name__
    kind = "" if isinstance(exc, TemplateError) else f"{type(exc).__name__}: "
    return TemplateFailure(f"{location(exc)}: {kind}{message}")


@lru_cache(maxsize=CACHE_SIZE)
def compiled(source: str) -> Template:
    """The compiled template (cached). Every failure is a TemplateFailure: deep nesting overflows Jinja's
    recursive parser and code generator (RecursionError) or Python's compiler ("too many nested parentheses")."""
    try:
        return ENVIRONMENT.from_string(source)
    except RecursionError:
        raise TemplateFailure(NESTED_TOO_DEEPLY) from None
    except MemoryError:
        raise
    except SyntaxError as exc:
        if "nested" in str(exc.msg) or "too many" in str(exc.msg):
            raise TemplateFailure(NESTED_TOO_DEEPLY) from None
        raise failure(exc) from None
    except Exception as exc:  # anything else a user's template can provoke is that template's error
        raise failure(exc) from None


def render(source: str, variables: dict[str, Any]) -> str:
    """The template's output, capped at MAX_OUTPUT_CHARS while it is produced (chunk by chunk). Raises
    TemplateFailure for every failure but MemoryError, which the caller reports with its own limit."""
    template = compiled(source)
    limit = MAX_OUTPUT_CHARS
    chunks: list[str] = []
    size = 0
    try:
        for chunk in template.generate(**variables):
            size += len(chunk)
            if size > limit:
                raise TemplateFailure(f"{TEMPLATE_NAME}: {OUTPUT_LIMIT}: output is larger than {limit} characters")
            chunks.append(chunk)
    except (TemplateFailure, MemoryError):
        raise
    except Exception as exc:  # any failure inside a user's template is that template's error, never a crash
        raise failure(exc) from None
    return "".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def is_json(text: str) -> bool:
    try:
        json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False
    return True


def body_of(output: str) -> tuple[bytes, str]:
    """The request body and content type for a template's output: JSON when it parses as JSON, else text."""
    try:
        body = output.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate written by the template ("\ud800")
        raise TemplateFailure(f"{TEMPLATE_NAME}: output is not valid Unicode text: {exc.reason}") from None
    return body, "application/json" if is_json(output) else TEXT_CONTENT_TYPE
