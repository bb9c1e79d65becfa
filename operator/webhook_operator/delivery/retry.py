"""Retry schedule: the seed's 1m, 5m, 15m, 1h, 4h, 12h, then retryLimitReached.

The schedule is data, so operators can change it and tests can compress it to milliseconds without touching the
dispatcher. Retry-After from the receiver is honoured as a lower bound: we never come back earlier than asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_SCHEDULE: tuple[float, ...] = (60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0)

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(text: str) -> float:
    """'90s', '5m', '1.5h', '200ms' or a bare number of seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a number with ms, s, m, h or d (e.g. 5m)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class RetryPolicy:
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE

    def __post_init__(self) -> None:
        if any(delay < 0 for delay in self.schedule):
            raise ValueError("retry delays must not be negative")

    @classmethod
    def parse(cls, text: str) -> RetryPolicy:
        """A comma-separated schedule such as '1m,5m,15m,1h,4h,12h'; an empty string means no retries."""
        parts = [p for p in text.split(",") if p.strip()]
        return cls(tuple(parse_duration(p) for p in parts))

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    def delay(self, failures: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait after the ``failures``-th failed attempt of a batch; None once retries are exhausted."""
        if failures < 1:
            raise ValueError("failures counts failed attempts and starts at 1")
        if failures > len(self.schedule):
            return None
        base = self.schedule[failures - 1]
        return base if retry_after is None else max(base, retry_after)
