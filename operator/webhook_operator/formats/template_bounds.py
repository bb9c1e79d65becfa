"""Size checks for everything a Custom template can use to build a large string or list, run *before* it allocates.

Jinja's sandbox stops attribute tricks and unsafe calls, not size: ``"x"|center(10**9)``, ``'%01000000000d' % 1``,
``'{:>1000000000}'.format(1)`` or ``''.join([big] * 1000)`` each built a gigabyte in under a second (issue 13,
finding 1). Each of these checks what it would build and raises ``SecurityError`` ("exceeded the output size
limit: …") when it is more than a body may be. ``formats.template_sandbox`` wires them into its environment: the
operators (``BINOPS``), the methods of strings and lists (``bounded_method``, ``bounded_format``) and the filters
(``FILTERS``). What they cannot see is left to the worker process's memory limit (``delivery.template_pool``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from functools import update_wrapper
from typing import Any

from jinja2 import filters as jinja_filters
from jinja2 import pass_environment, pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter
from markupsafe import Markup

#: Largest body a template may produce (characters), and so the largest string any one operation may build.
MAX_OUTPUT_CHARS = 5_000_000
#: Largest list a ``*``, ``+``, ``extend``, ``batch`` or ``slice`` may build (items).
MAX_REPEAT_LENGTH = 1_000_000
#: Largest exponent ``**`` may use, and largest integer (bits) ``*`` and ``**`` may build.
MAX_EXPONENT = 1000
MAX_INT_BITS = 1_000_000
OUTPUT_LIMIT = "exceeded the output size limit"

_STRINGS = (str, bytes, bytearray)
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


def _too_big(what: str, size: int, unit: str = "characters", limit: int | None = None) -> SecurityError:
    limit = MAX_OUTPUT_CHARS if limit is None else limit
    return SecurityError(f"{OUTPUT_LIMIT}: {what} would build {size} {unit} (at most {limit})")


def _check_chars(what: str, size: int) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise _too_big(what, size)


def _check_items(what: str, size: int) -> None:
    if size > MAX_REPEAT_LENGTH:
        raise _too_big(what, size, "items", MAX_REPEAT_LENGTH)


def _check_number(what: str, digits: str) -> None:
    if len(digits) > 9 or int(digits) > MAX_OUTPUT_CHARS:
        raise _too_big(what, int(digits) if len(digits) <= 30 else 10**30)


def _check_printf(fmt: str | bytes | bytearray, args: Any) -> None:
    """``fmt % args``: no width or precision (literal or ``*``) larger than a body may be."""
    text = fmt if isinstance(fmt, str) else bytes(fmt).decode("latin-1")
    star = False
    for match in _PRINTF.finditer(text):
        for group in match.groups():
            if group == "*":
                star = True
            elif group:
                _check_number("a % format width or precision", group)
    if star:
        for value in args if isinstance(args, tuple) else (args,):
            if isinstance(value, int) and value > MAX_OUTPUT_CHARS:
                _check_number("a % format width or precision", str(value))


def _check_spec(spec: str) -> None:
    for digits in _DIGITS.findall(spec):
        _check_number("a format width or precision", digits)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, _STRINGS) else len(str(value))


def _join_size(separator: Any, items: list[Any]) -> int:
    total = _length(separator) * max(len(items) - 1, 0)
    for item in items:
        total += _length(item)
        _check_chars("join", total)
    return total


# -- methods of str, bytes and list, bounded (see template_sandbox._Sandbox.wrap_str_format) -------------------------


def _padded(name: str) -> Callable[..., Any]:
    def check(owner: Any, *args: Any) -> None:
        if args and isinstance(args[0], int) and args[0] > len(owner):
            _check_chars(f"{name}()", args[0])

    return check


def _check_expandtabs(owner: Any, *args: Any, **kwargs: Any) -> None:
    size = args[0] if args else kwargs.get("tabsize", 8)
    if isinstance(size, int):
        _check_chars("expandtabs()", len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * size)


def _check_replace(owner: Any, *args: Any) -> None:
    if len(args) >= 2 and isinstance(args[0], _STRINGS) and isinstance(args[1], _STRINGS):
        old, new = args[0], args[1]
        count = owner.count(old) if old else len(owner) + 1
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            count = min(count, args[2])
        _check_chars("replace()", len(owner) + count * max(len(new) - len(old), 0))


def _check_translate(owner: Any, *args: Any) -> None:
    if isinstance(owner, str) and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        _check_chars("translate()", len(owner) * max(longest, 1))


_METHOD_CHECKS: dict[str, Callable[..., None]] = {
    "center": _padded("center"), "ljust": _padded("ljust"), "rjust": _padded("rjust"), "zfill": _padded("zfill"),
    "expandtabs": _check_expandtabs, "replace": _check_replace, "translate": _check_translate,
}  # fmt: skip


def bounded_method(method: Any, owner: Any, name: str) -> Callable[..., Any] | None:
    if isinstance(owner, list) and name == "extend":

        def extend(items: Iterable[Any]) -> None:
            items = items if isinstance(items, list | tuple) else list(items)
            _check_items("extend()", len(owner) + len(items))
            owner.extend(items)

        return update_wrapper(extend, method)
    if not isinstance(owner, _STRINGS):
        return None
    if name == "join":

        def join(items: Iterable[Any]) -> Any:
            materialised = list(items)
            _join_size(owner, materialised)
            return method(materialised)

        return update_wrapper(join, method)
    check = _METHOD_CHECKS.get(name)
    if check is None:
        return None

    def bounded(*args: Any, **kwargs: Any) -> Any:
        check(owner, *args, **kwargs)
        return method(*args, **kwargs)

    return update_wrapper(bounded, method)


# -- str.format and str.format_map: Jinja's sandboxed formatter, with bounded widths -------------------------------


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        _check_spec(format_spec)
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, SandboxedEscapeFormatter):
    pass


# -- filters, bounded ------------------------------------------------------------------------------------------------


def _center(value: Any, width: int = 80) -> str:
    if isinstance(width, int) and width > len(str(value)):
        _check_chars("center", width)
    return jinja_filters.do_center(value, width)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_printf(str(value), kwargs or args)
    return jinja_filters.do_format(value, *args, **kwargs)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    step = len(width) if isinstance(width, str) else width
    if isinstance(step, int):
        _check_chars("indent", len(text) + (text.count("\n") + 1) * max(step, 0))
    return jinja_filters.do_indent(s, width, first, blank)


@pass_environment
def _wordwrap(environment: Any, s: Any, width: int = 79, break_long_words: bool = True, wrapstring: str | None = None,
              break_on_hyphens: bool = True) -> str:  # fmt: skip
    text = str(s)
    between = environment.newline_sequence if wrapstring is None else wrapstring
    _check_chars("wordwrap", len(text) + (len(text) + 1) * len(str(between)))
    return jinja_filters.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    text = str(s)
    _check_replace(text, str(old), str(new), *(() if count is None else (count,)))
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    items = list(value)
    if attribute is not None:
        getter = jinja_filters.make_attrgetter(eval_ctx.environment, attribute)
        items = [getter(item) for item in items]
    _join_size(d, items)
    joined: str = jinja_filters.do_join(eval_ctx, items, d)
    return joined


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    if isinstance(linecount, int):
        _check_items("batch", linecount)
    return jinja_filters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    if isinstance(slices, int):
        _check_items("slice", slices)
    return jinja_filters.do_slice(value, slices, fill_with)


def _power(left: Any, right: Any) -> Any:
    if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
        raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
    big = (
        isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS
    )
    if big:
        raise _too_big("**", left.bit_length() * right, "bits", MAX_INT_BITS)
    return operator.pow(left, right)


def _multiply(left: Any, right: Any) -> Any:
    for sequence, times in ((left, right), (right, left)):
        repeats = isinstance(sequence, str | bytes | list | tuple) and isinstance(times, int)
        if repeats and len(sequence) * times > MAX_REPEAT_LENGTH:
            raise SecurityError(
                f"{OUTPUT_LIMIT}: repeating a sequence to more than {MAX_REPEAT_LENGTH} items is not allowed"
            )
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise _too_big("*", left.bit_length() + right.bit_length(), "bits", MAX_INT_BITS)
    return operator.mul(left, right)


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, _STRINGS) and isinstance(right, _STRINGS):
        _check_chars("+", len(left) + len(right))
    elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
        _check_items("+", len(left) + len(right))
    return operator.add(left, right)


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, _STRINGS):
        _check_printf(left, right)
    return operator.mod(left, right)


BINOPS: dict[str, Callable[[Any, Any], Any]] = {"**": _power, "*": _multiply, "+": _add, "%": _modulo}


def bounded_format(env: Any, value: Any, owner: str, is_format_map: bool) -> Callable[..., str]:
    """``owner.format``/``owner.format_map`` through Jinja's sandboxed formatter, every width and precision
    bounded (what ``SandboxedEnvironment.wrap_str_format`` does, with ``_BoundedFormatter``)."""
    formatter: SandboxedFormatter
    if isinstance(owner, Markup):
        formatter = _BoundedEscapeFormatter(env, escape=owner.escape)
    else:
        formatter = _BoundedFormatter(env)
    str_type = type(owner)

    def wrapper(*args: Any, **kwargs: Any) -> str:
        if is_format_map:
            if kwargs or len(args) != 1:
                raise TypeError("format_map() takes exactly one positional argument")
            return str_type(formatter.vformat(owner, (), args[0]))
        return str_type(formatter.vformat(owner, args, kwargs))

    return update_wrapper(wrapper, value)


FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center, "format": _format, "indent": _indent, "wordwrap": _wordwrap, "replace": _replace,
    "join": _join, "batch": _batch, "slice": _slice,
}  # fmt: skip
