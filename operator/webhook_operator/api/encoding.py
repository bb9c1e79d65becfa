"""Compact JSON, written once: the stored form of an event, the intake's per-event bodies and the payloads all
use the same encoding, so a body stored from the intake is byte-identical to one re-encoded from its model.

The encoding is the standard library's ``json`` with ``separators=(",", ":")`` and ``ensure_ascii=False``; that byte
format is the contract (stored bodies, signatures over rendered bodies, tests). It is *produced* by orjson on the hot
path, because encoding was the largest single cost per event (issue 12: ~100 µs of ``json`` per 8 KB event, ~8 µs
with orjson), and orjson's output is the same bytes for everything a ChangeEvent holds — strings (non-ASCII raw,
the same escapes), integers, ``true``/``false``/``null``, and floats written in the same shortest round-trip digits —
with four exceptions, each of which falls back to ``json`` so the bytes never differ:

* floats below 1e-4 in magnitude: ``json`` writes ``1e-05``, orjson ``0.00001`` or ``1e-5``. orjson's output then
  holds ``0.0000`` or a number token with a negative exponent; either (rare in real events, and harmless when it
  is only text inside a string) sends the value to ``json``;
* integers beyond 64 bits, strings with unpaired surrogates, keys that are not strings: orjson raises, ``json`` does
  what it always did (writes the integer; raises ``UnicodeEncodeError`` when the text is made UTF-8; converts keys);
* infinities and NaN: ``json`` writes ``Infinity``/``NaN`` (not JSON), orjson ``null``. Only a number literal
  beyond a double's range (``1e400``) can produce one; the intake detects it and keeps today's stored body (see
  ``intake.parsing``); a payload rendered from such an event gets ``null``, which receivers can at least parse;
* values orjson serialises and ``json`` refuses (dataclasses, datetimes, enums that are not ``str``): no caller
  passes them; ``json`` would raise ``TypeError`` for them, so nothing relies on either behaviour.

One ``json`` encoder is built here and reused: ``json.dumps`` with non-default arguments builds a new
``JSONEncoder`` on every call.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DIGITS = frozenset(b"0123456789")
_MANTISSA = frozenset(b"0123456789.")
_MINUS = ord("-")
_BEFORE_VALUE = frozenset(b":,[")


def _orjson_matches_json(data: bytes) -> bool:
    """False when ``data`` (orjson's output) may hold a float that ``json`` would write differently: a positional
    ``0.0000…`` anywhere, or a number token (after ``:``, ``,`` or ``[``) with a negative exponent. Text inside
    strings can only make this answer False wrongly, which costs a ``json`` encode, never a wrong byte; UUIDs
    (``…3e-4…``) are not number tokens, so they do not."""
    if b"0.0000" in data:
        return False
    at = data.find(b"e-")
    while at != -1:
        i = at - 1
        if i >= 0 and data[i] in _DIGITS:
            while i >= 0 and data[i] in _MANTISSA:
                i -= 1
            if i >= 0 and data[i] == _MINUS:
                i -= 1
            if i < 0 or data[i] in _BEFORE_VALUE:
                return False
        at = data.find(b"e-", at + 2)
    return True


def compact_json(value: Any) -> bytes:
    """JSON without insignificant whitespace, as UTF-8, non-ASCII kept as is (receivers get the text they would
    read, as OpenMetadata's Java server sends it): what goes on the wire and into the store."""
    try:
        data = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a big integer, a lone surrogate, a non-string key
        return _ENCODER.encode(value).encode("utf-8")
    if _orjson_matches_json(data):
        return data
    return _ENCODER.encode(value).encode("utf-8")


def compact_json_text(value: Any) -> str:
    """``compact_json`` as text, for limits counted in characters. Never raises ``UnicodeEncodeError``: text with an
    unpaired surrogate comes back as ``json`` writes it (it fails only once made UTF-8, as before)."""
    try:
        data = orjson.dumps(value)
    except TypeError:
        return _ENCODER.encode(value)
    if _orjson_matches_json(data):
        return data.decode("utf-8")
    return _ENCODER.encode(value)


def compact_json_reference(value: Any) -> bytes:
    """The reference encoding ``compact_json`` reproduces, always through ``json``: for the rare value that may hold
    an infinity or NaN (written ``Infinity``/``NaN``, as before orjson), which ``compact_json`` cannot detect."""
    return _ENCODER.encode(value).encode("utf-8")
