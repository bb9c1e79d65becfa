"""Cutting text to a length, written once: chat formats cut to what Slack, Teams and Google Chat accept, the status
cuts messages so a huge error text cannot bloat the Webhook object, and both mark the cut the same way."""

from __future__ import annotations

ELLIPSIS = "…"


def truncate(text: str, limit: int, ellipsis: str = ELLIPSIS) -> str:
    """At most ``limit`` characters, counted in code points (as Slack and Google count them), the cut marked with
    ``ellipsis``. A limit too small for the mark is a caller's bug, so it raises instead of returning more than was
    asked for."""
    if limit < max(1, len(ellipsis)):
        raise ValueError(f"limit must be positive and hold the ellipsis, got {limit}")
    return text if len(text) <= limit else text[: limit - len(ellipsis)] + ellipsis
