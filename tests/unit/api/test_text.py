"""``truncate`` and compact JSON: the one implementation the formats, the engine and the status share."""

from __future__ import annotations

import json

import pytest

from webhook_operator.api.encoding import compact_json, compact_json_text
from webhook_operator.api.text import ELLIPSIS, truncate


def test_truncate_keeps_what_fits_and_marks_the_cut() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "ab" + ELLIPSIS
    assert truncate("abcd", 1) == ELLIPSIS
    assert ELLIPSIS == "\u2026"  # one code point: a cut text is exactly ``limit`` long


def test_truncate_counts_code_points_not_bytes() -> None:
    text = "ü" * 10 + "🙂" * 10
    cut = truncate(text, 15)
    assert len(cut) == 15 and cut == "ü" * 10 + "🙂" * 4 + ELLIPSIS


def test_truncate_with_another_mark() -> None:
    assert truncate("abcdef", 5, ellipsis="...") == "ab..."
    assert truncate("abcdef", 3, ellipsis="...") == "..."
    assert truncate("abc", 3, ellipsis="...") == "abc"
    assert truncate("abcdef", 3, ellipsis="") == "abc"


@pytest.mark.parametrize(("limit", "ellipsis"), [(0, ELLIPSIS), (-1, ELLIPSIS), (0, ""), (2, "...")])
def test_truncate_rejects_a_limit_that_cannot_hold_the_mark(limit: int, ellipsis: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        truncate("abc", limit, ellipsis=ellipsis)


def test_compact_json_is_one_encoding_as_text_and_bytes() -> None:
    value = {"name": "Zürich 🙂", "list": [1, 2.5, None, True], "nested": {"a": "b"}}
    text = compact_json_text(value)
    assert text == '{"name":"Zürich 🙂","list":[1,2.5,null,true],"nested":{"a":"b"}}'
    assert compact_json(value) == text.encode("utf-8")
    assert json.loads(text) == value
