"""``spec.delivery``: how much one Webhook may keep queued (issue 13, finding 4), apart from the rest of the spec
because it is the operator's store bound seen from the resource, not part of the OpenMetadata entity."""

from __future__ import annotations

from pydantic import Field, StrictInt

from webhook_operator.api._model import EXTENSION, ResourceModel

#: A queue age limit: a whole number of seconds, minutes, hours or days ("90m", "7d").
QUEUE_AGE_PATTERN = r"^[1-9][0-9]{0,8}(s|m|h|d)$"
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_QUEUED_LIMIT = 100_000_000


class DeliveryLimits(ResourceModel):
    """How much one webhook may keep queued. Both can only tighten the operator's own limits (``--max-queued-per-
    webhook``, ``--max-queued-age``): whoever can write a Webhook must not be able to fill the shared store."""

    max_queued: StrictInt | None = Field(
        default=None,
        alias="maxQueued",
        ge=1,
        le=MAX_QUEUED_LIMIT,
        description=EXTENSION + "Most events queued for this webhook; beyond it the oldest (never the batch being "
        "retried) move to the dead letters. At most the operator's --max-queued-per-webhook.",
    )
    max_queued_age: str | None = Field(
        default=None,
        alias="maxQueuedAge",
        pattern=QUEUE_AGE_PATTERN,
        description=EXTENSION + "Longest an event waits queued (e.g. 90m, 7d); older ones (never the batch being "
        "retried) move to the dead letters. At most the operator's --max-queued-age.",
    )

    @property
    def max_queued_age_seconds(self) -> float | None:
        if self.max_queued_age is None:
            return None
        return float(int(self.max_queued_age[:-1]) * _AGE_UNITS[self.max_queued_age[-1]])
