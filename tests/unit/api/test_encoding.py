"""api.encoding: orjson produces the bytes, but the contract is the standard library's compact JSON, byte for byte."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest

from support.events import event_files
from webhook_operator.api.encoding import compact_json, compact_json_reference, compact_json_text

_REFERENCE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def reference(value: Any) -> bytes:
    return _REFERENCE.encode(value).encode("utf-8")


def test_every_sample_event_encodes_exactly_as_json_does() -> None:
    for path in event_files():
        value = json.loads(path.read_text(encoding="utf-8"))
        assert compact_json(value) == reference(value), path.name
        assert compact_json_text(value) == _REFERENCE.encode(value), path.name


@pytest.mark.parametrize(
    "value",
    [
        "".join(chr(c) for c in range(0x800)),  # every control character, ASCII, Latin, more
        "\U0001f600 \U00010000 \U0010ffff \ufeff \uffff \u2028\u2029 \x7f",  # non-BMP, BOM, separators, DEL
        {'k"\\\n': ['"quoted"', "back\\slash", "tab\t", "/slash/"]},
        [2**63 - 1, 2**63, 2**64 - 1, -(2**63), 0, -1],
        [2**64, -(2**63) - 1, 10**40],  # beyond 64 bits: orjson refuses, json writes them
        {1: "int key", "s": None, "t": True, "f": False},
        [0.1, 0.2, 1.0, -0.0, 1e15, 1e16, 1.5e16, 1e21, 1e300, 5e-324, 0.0001],
        [1e-05, 1.5e-05, -7.185e-09, 1.2e-07, 0.00012, 3e-10, 1e-100],  # json's exponent forms
        {"text": "0.00001 looks like a float, 1e-5 too"},  # only text: the fallback is harmless
    ],
)
def test_edge_values_encode_exactly_as_json_does(value: Any) -> None:
    assert compact_json(value) == reference(value)
    assert compact_json_text(value) == _REFERENCE.encode(value)


def test_random_floats_of_every_magnitude_encode_exactly_as_json_does() -> None:
    rng = random.Random(12)
    values = [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(20_000)]
    values += [rng.random() * 10.0 ** rng.randint(-12, 22) for _ in range(20_000)]
    values = [v for v in values if math.isfinite(v)]
    assert compact_json(values) == reference(values)
    for value in values[:5000]:
        assert compact_json(value) == reference(value), value


def test_an_unpaired_surrogate_still_fails_to_encode_as_utf8() -> None:
    with pytest.raises(UnicodeEncodeError):
        compact_json({"note": "\ud800"})
    assert compact_json_text("\ud800") == _REFERENCE.encode("\ud800")


def test_the_reference_keeps_non_finite_floats_as_json_wrote_them() -> None:
    assert compact_json_reference([math.inf, -math.inf]) == b"[Infinity,-Infinity]"
