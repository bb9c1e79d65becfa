"""Test doubles for the status package."""

from __future__ import annotations

from typing import Any

from webhook_operator.status.events import EventRecorder, ObjectRef
from webhook_operator.status.kube import ClientSource


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder(EventRecorder):
    """The real rate limiting with the API call replaced by a log of what would be sent."""

    def __init__(self, source: ClientSource, **kw: Any) -> None:
        super().__init__(source, **kw)
        self.sent: list[tuple[str, str | None, int]] = []
        self.fail = False

    def _send(
        self, ref: ObjectRef, type: str, reason: str, message: str, name: str | None, count: int, occurrences: int
    ) -> tuple[str, int]:
        if self.fail:
            raise OSError("connection refused")
        self.sent.append((reason, name, count + occurrences))
        return name or f"{ref.name}.1", count + occurrences


def unused_client() -> Any:
    raise AssertionError("no API client in unit tests")
