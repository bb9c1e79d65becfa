"""What the intake hands accepted events to, as a structural protocol.

The dispatcher (``webhook_operator.delivery.dispatcher.Dispatcher``) satisfies it without importing it, which keeps
the layering one-way: delivery may know about the intake's needs, the intake never imports delivery. A test asserts
under mypy that a ``Dispatcher`` is accepted where a ``Submitter`` is expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from webhook_operator.api.events import ChangeEvent


class SubmitResultLike(Protocol):
    """Counts of one submission. Read-only properties, so frozen dataclasses satisfy the protocol."""

    @property
    def accepted(self) -> int: ...

    @property
    def duplicates(self) -> int: ...

    @property
    def queued(self) -> int: ...


class Submitter(Protocol):
    """Durably accepts events; returns only after the store committed them.

    ``bodies[i]`` is the compact JSON of ``events[i]`` as received, so the stored copy keeps every field (an
    ``entity`` sent as a JSON string stays a string). Raises ``webhook_operator.store.base.StoreUnavailable`` when
    nothing could be stored; it must never take part of a submission.
    """

    async def submit(
        self, events: Sequence[ChangeEvent], bodies: Sequence[bytes] | None = None
    ) -> SubmitResultLike: ...
