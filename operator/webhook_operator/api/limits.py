"""The one nesting limit every JSON document the operator accepts must meet (issue 13, finding 5).

``MAX_DEPTH`` counts arrays and objects: ``{}`` is depth 1, ``{"a": [1]}`` depth 2. The intake checks it on the whole
post (so an event inside ``{"data": [...]}`` has two levels fewer to itself), on an ``entity`` sent as a JSON string
(its own text) and on the operations API's bodies. It is far below every parser's own limit (pydantic-core's 200,
``json``'s recursion limit), so an accepted event can always be parsed again at delivery time.

The check is iterative and cheap: one ``translate`` of the raw text keeps only quotes and brackets, strings are cut
out of those, and innermost bracket pairs are removed level by level with ``bytes.replace`` (C speed; at most
``limit`` passes over the brackets outside strings alone). ``too_deep_at`` finds where, on the parsed value, only
for a refusal.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_DEPTH", "deeper_than", "depth_message", "too_deep_at"]

#: Most levels of nested arrays/objects in any JSON document the operator accepts.
MAX_DEPTH = 64

_TO_PARENS = bytes.maketrans(b"{[}]", b"(())")
_NOT_MARKS = bytes(c for c in range(256) if c not in b'{}[]"')


def depth_message(limit: int = MAX_DEPTH) -> str:
    return f"nested deeper than {limit} levels"


def deeper_than(text: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Whether well-formed JSON ``text`` nests arrays/objects more than ``limit`` levels deep.

    Meant for text a JSON parser has accepted: on malformed text the answer is a guess. One pass over the text (a
    ``translate`` keeping quotes and brackets); everything after works on those few characters."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    # An escaped backslash or quote is neither a string's end nor a bracket (left to right, as JSON pairs them).
    if b"\\\\" in raw:
        raw = raw.replace(b"\\\\", b"")
    if b'\\"' in raw:
        raw = raw.replace(b'\\"', b"")
    marks = raw.translate(None, _NOT_MARKS)  # quotes and brackets only
    if marks.count(b"{") + marks.count(b"[") <= limit:
        return False
    brackets = marks.replace(b'""', b"")  # every string without a bracket in it, paired left to right
    if b'"' in brackets:  # a string holds brackets (that pairing went astray after it): cut strings out exactly
        brackets = b"".join(marks.split(b'"')[::2])
    brackets = brackets.translate(_TO_PARENS)
    for _ in range(limit):
        shorter = brackets.replace(b"()", b"")  # every innermost pair: one level less
        if not shorter or len(shorter) == len(brackets):  # done, or unbalanced (not JSON): nothing more to learn
            return False
        brackets = shorter
    return True


def too_deep_at(value: Any, limit: int = MAX_DEPTH) -> list[str | int] | None:
    """The path (keys and indexes) to the first array/object of parsed ``value`` nested deeper than ``limit``,
    or None. Iterative: an explicit stack, never Python recursion."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            children: Any = node.items()
        elif isinstance(node, list):
            children = enumerate(node)
        else:
            continue
        if len(path) >= limit:
            return path
        stack.extend((child, [*path, key]) for key, child in reversed(list(children)))
    return None
