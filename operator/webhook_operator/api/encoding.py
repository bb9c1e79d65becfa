"""Compact JSON, written once: the stored form of an event, the intake's per-event bodies and the payloads all
use the same encoding, so a body stored from the intake is byte-identical to one re-encoded from its model.

One encoder is built here and reused: ``json.dumps`` with non-default arguments builds a new ``JSONEncoder`` on
every call, and the formats encode on the hot path (a chat format encodes each candidate while fitting a batch).
"""

from __future__ import annotations

import json
from typing import Any

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def compact_json_text(value: Any) -> str:
    """JSON text without insignificant whitespace; non-ASCII kept as is (receivers get the text they would read, as
    OpenMetadata's Java server sends it). For limits counted in characters."""
    return _ENCODER.encode(value)


def compact_json(value: Any) -> bytes:
    """``compact_json_text`` as UTF-8: what goes on the wire and into the store."""
    return _ENCODER.encode(value).encode("utf-8")
