"""Request body → validated ChangeEvents plus each event's body exactly as received (re-encoded compactly).

Three shapes are accepted, because OpenMetadata has sent all of them over the years and people replay events by
hand: one ChangeEvent object (current servers, one event per request), a JSON array of them, and the legacy list
publisher's ``{"data": [...], "paging": {...}}``. OpenMetadata's "test destination" button posts
``{"message": "..."}``; that is recognised as a ping so the button reports success instead of a 400.

Validation is all-or-nothing: one bad event refuses the whole post (400) so a sender retrying the post never gets a
half-accepted batch. Error messages name the failing field with its position, the way a person would look it up in
the body: ``data[3].timestamp: Field required``, ``[0].eventType: Input should be a valid string``.

The per-event bodies are ``api.encoding.compact_json(raw)`` of the object as received,
not of the model: the model normalises (``entity`` parsed from a JSON string, unknown fields in a different order),
and the store should keep what OpenMetadata actually sent.

Cost (issue 12): the body is parsed once, by pydantic-core's JSON parser (jiter; about half the CPU of ``json``,
exact for integers of any size), each event dict is validated once and compacted once (orjson, see
``api.encoding``). Anything that parser refuses goes through the original ``json`` path, so every refusal keeps its
exact message and every oddity ``json`` accepts (an unpaired surrogate escape, refused later with its own message)
is judged as before. One such oddity the fast path cannot see: a number beyond a double's range (``1e400``) parses
as infinity, which orjson would write as ``null``; since that turns a number into an extra ``null`` in the compact
body, a post whose bodies hold more ``null`` tokens than it does is redone on the original path (only a duplicated
key whose dropped value was ``null``, in the same post as such a number, could hide one).

Types are JSON's (issue 13, item 11): validation is strict, so ``"1.5"`` is not a number and ``true`` not a version,
exactly as the OpenAPI document (the model's JSON schema) says; only the validators the model declares convert
(``entity`` as JSON text, an integral ``timestamp`` such as ``1e3``, ``null`` change lists).

Depth (issue 13, finding 5): a post may nest at most ``api.limits.MAX_DEPTH`` levels, on either path, so every stored
event can be parsed again at delivery time; deeper is a 400 naming the limit and the event's field
(``data[3].entity: nested deeper than 64 levels``). The check is one scan of the raw bytes
(``api.limits.deeper_than``: C-speed ``translate``/``replace``, no recursion); only a refused post is walked, with an
explicit stack, to say where. A string-valued ``entity`` is held to the same limit by the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json

from webhook_operator.api.encoding import compact_json, compact_json_reference
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.limits import deeper_than, depth_message, too_deep_at
from webhook_operator.intake.errors import IntakeError

__all__ = ["DEFAULT_MAX_EVENTS", "IntakeError", "ParsedPost", "parse_events"]

#: Most events one post may carry (413 above). OpenMetadata sends one per request; replays and benchmarks batch.
DEFAULT_MAX_EVENTS = 10_000
#: Errors listed in one 400 answer: enough to fix a systematic mistake, bounded so the answer stays small.
MAX_REPORTED_ERRORS = 10

_UTF8_BOM = b"\xef\xbb\xbf"
_SHAPES = 'a ChangeEvent object, a JSON array of ChangeEvents, or {"data": [ChangeEvent, ...]}'


@dataclass(frozen=True)
class ParsedPost:
    """A valid post: ``events[i]`` was received as ``bodies[i]``.

    ``ping`` is OpenMetadata's destination test (``{"message": ...}``): no events, nothing to store, answer 2xx.
    """

    events: list[ChangeEvent] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    ping: bool = False


def parse_events(body: bytes, *, max_events: int = DEFAULT_MAX_EVENTS) -> ParsedPost:
    """Decode and validate a post. Raises ``IntakeError`` (400, or 413 for too many events) naming what is wrong."""
    try:
        value = from_json(body[len(_UTF8_BOM) :] if body.startswith(_UTF8_BOM) else body, allow_inf_nan=False)
    except ValueError:  # not JSON, or JSON that only ``json`` reads: the original path, with its exact messages
        value = _decode(body)
        _check_depth(body, value)
        return _parse(value, max_events, compact_json_reference)
    _check_depth(body, value)
    parsed = _parse(value, max_events, compact_json)
    if sum(b.count(b"null") for b in parsed.bodies) > body.count(b"null"):  # an infinity became null: see above
        return _parse(_decode(body), max_events, compact_json_reference)
    return parsed


def _check_depth(body: bytes, value: Any) -> None:
    """``MAX_DEPTH`` for the whole post (a cheap scan of the raw bytes); on a refusal, name the event and field."""
    if not deeper_than(body):
        return
    path = too_deep_at(value) or []
    keep = 3 if isinstance(value, dict) and "data" in value else 2 if isinstance(value, list) else 1
    where = ""
    for part in path[:keep]:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else part)
    raise IntakeError(400, f"{where or 'body'}: {depth_message()}")


def _parse(value: Any, max_events: int, compact: Callable[[Any], bytes]) -> ParsedPost:
    prefix, items = _items(value)
    if items is None:
        return ParsedPost(ping=True)
    if not items:
        raise IntakeError(400, "empty batch")
    if len(items) > max_events:
        raise IntakeError(413, f"too many events in one post: {len(items)} (at most {max_events})")
    events: list[ChangeEvent] = []
    bodies: list[bytes] = []
    errors: list[str] = []
    for index, item in enumerate(items):
        where = f"{prefix}[{index}]" if prefix is not None else ""
        if not isinstance(item, dict):
            errors.append(f"{where or 'body'}: Input should be a JSON object, not {_json_type(item)}")
        else:
            try:
                events.append(ChangeEvent.model_validate(item, strict=True))
                bodies.append(_compact(item, where, compact))
            except ValidationError as exc:
                errors.extend(_describe(where, exc))
            except IntakeError as exc:
                errors.append(exc.message)
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
    if errors:
        raise IntakeError(400, "; ".join(errors[:MAX_REPORTED_ERRORS]))
    return ParsedPost(events, bodies)


def _decode(body: bytes) -> Any:
    # RFC 8259: JSON on the wire is UTF-8; a leading BOM may be ignored. Decoding ourselves (instead of letting
    # json.loads guess UTF-16/32 from bytes) keeps "what was signed" and "what was parsed" the same text.
    if body.startswith(_UTF8_BOM):
        body = body[len(_UTF8_BOM) :]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntakeError(400, f"body is not valid UTF-8: invalid byte at offset {exc.start}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise IntakeError(400, f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise IntakeError(400, f"body: {depth_message()}") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise IntakeError(400, f"body is not valid JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; accepting them would store bodies no other JSON parser reads back.
    raise IntakeError(400, f"body is not valid JSON: {name} is not a JSON value")


def _items(value: Any) -> tuple[str | None, list[Any] | None]:
    """(position prefix, events) of the post; events None for a destination test ping."""
    if isinstance(value, list):
        return "", value
    if isinstance(value, dict):
        if "data" in value:
            data = value["data"]
            if not isinstance(data, list):
                raise IntakeError(400, f"data: Input should be a JSON array of ChangeEvents, not {_json_type(data)}")
            return "data", data
        if value.keys() == {"message"} and isinstance(value["message"], str):
            return None, None
        return None, [value]
    raise IntakeError(400, f"body must be {_SHAPES}, not {_json_type(value)}")


def _compact(item: dict[str, Any], where: str, compact: Callable[[Any], bytes]) -> bytes:
    try:
        return compact(item)
    except UnicodeEncodeError:
        # "\ud800" alone is valid JSON syntax but not Unicode text; the store keeps UTF-8, so refuse it here.
        raise IntakeError(400, f"{where or 'body'}: a string holds an unpaired UTF-16 surrogate escape") from None


def _describe(where: str, exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        path = where
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        out.append(f"{path or 'body'}: {error['msg']}")
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
