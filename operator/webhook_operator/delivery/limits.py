"""How much one webhook may keep queued (issue 13, finding 4): the operator's limits, a Webhook's own tighter ones,
and the words used when events are moved to the dead letters because of them.

A webhook whose receiver is down, or that is paused, keeps accepting events so that nothing is lost while someone
fixes it. Without a bound, one such webhook (a catch-all with a missing Secret) fills the shared volume and the
intake refuses events for everyone. Over its cap or its age limit, the oldest queued events move to the dead
letters: kept for the retention period, listed in the delivery log, redeliverable. The held batch is never moved:
it is being retried and must be delivered first, or order is broken; it is at most ``batchSize`` events.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook_operator.api.webhook import WebhookSpec

DEFAULT_MAX_QUEUED = 100_000
DEFAULT_MAX_AGE = 7 * 86400.0


def age_text(seconds: float) -> str:
    """``7d``, ``1h``, ``90m``, ``45s``: an age limit as it is written in a spec or a flag."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class QueueLimits:
    """``max_queued`` events and ``max_age`` seconds per webhook queue; None means no limit."""

    max_queued: int | None = DEFAULT_MAX_QUEUED
    max_age: float | None = DEFAULT_MAX_AGE

    def __post_init__(self) -> None:
        if self.max_queued is not None and self.max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        if self.max_age is not None and self.max_age <= 0:
            raise ValueError("max_age must be positive")

    def for_spec(self, spec: WebhookSpec) -> QueueLimits:
        """The limits of one webhook: its own ``spec.delivery`` ones, but never looser than the operator's."""
        own = spec.delivery
        if own is None:
            return self
        queued = [n for n in (self.max_queued, own.max_queued) if n is not None]
        ages = [a for a in (self.max_age, own.max_queued_age_seconds) if a is not None]
        return QueueLimits(min(queued, default=None), min(ages, default=None))

    def trim_to(self) -> int | None:
        """What a queue over its cap is cut back to: 1 % under the cap, so a webhook sitting at its cap costs one
        trim per 1 % of new events rather than one per event (exactly the cap below 100)."""
        return None if self.max_queued is None else self.max_queued - self.max_queued // 100

    def reason(self, over_cap: int, too_old: int) -> str:
        parts = []
        if over_cap:
            parts.append(f"{over_cap} over maxQueued {self.max_queued}")
        if too_old:
            parts.append(f"{too_old} older than maxQueuedAge {age_text(self.max_age or 0)}")
        return f"queue limit: {' and '.join(parts)} moved to the dead letters"
