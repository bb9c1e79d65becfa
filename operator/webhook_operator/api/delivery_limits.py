"""``spec.delivery``: how much one Webhook may keep queued (issue 13, finding 4) and how it may deliver in parallel
(issue 12, ``ordering`` and ``maxInFlight``), apart from the rest of the spec because these are the operator's
delivery engine seen from the resource, not part of the OpenMetadata entity."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, StrictInt

from webhook_operator.api._model import EXTENSION, ResourceModel

#: A queue age limit: a whole number of seconds, minutes, hours or days ("90m", "7d").
QUEUE_AGE_PATTERN = r"^[1-9][0-9]{0,8}(s|m|h|d)$"
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_QUEUED_LIMIT = 100_000_000
#: Bounds and default of ``maxInFlight``: requests (batches) one webhook may have in flight at once.
MAX_IN_FLIGHT_LIMIT = 256
DEFAULT_MAX_IN_FLIGHT = 8


class Ordering(StrEnum):
    """What order a webhook's events must reach its receiver in.

    ``webhook`` is the seed's behaviour (strict FIFO, one batch in flight) and stays the default; ``entity`` keeps
    each entity's events in order and sends different entities in parallel; ``none`` promises no order at all."""

    WEBHOOK = "webhook"
    ENTITY = "entity"
    NONE = "none"


class DeliveryLimits(ResourceModel):
    """How much one webhook may keep queued, and how it delivers. The queue limits can only tighten the operator's
    own (``--max-queued-per-webhook``, ``--max-queued-age``): whoever can write a Webhook must not be able to fill
    the shared store. ``ordering``/``maxInFlight`` default to the seed's one-batch-at-a-time FIFO."""

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

    ordering: Ordering = Field(
        default=Ordering.WEBHOOK,
        description=EXTENSION + "Order the receiver gets events in. webhook (default): one batch in flight, strict "
        "arrival order, a failing batch holds everything behind it (the seed's behaviour). entity: events of one "
        "entity (entityId, else entityFullyQualifiedName, else the event's own id) stay in order and are batched "
        "only with each other; different entities go out in parallel, up to maxInFlight batches; a failing entity "
        "holds only its own events. none: up to maxInFlight batches in parallel, in no particular order.",
    )
    max_in_flight: StrictInt = Field(
        default=DEFAULT_MAX_IN_FLIGHT,
        alias="maxInFlight",
        ge=1,
        le=MAX_IN_FLIGHT_LIMIT,
        description=EXTENSION + "With ordering entity or none: most batches sent or held for a retry at once "
        "(requests in flight, and so connections opened to the receiver, never exceed it). Ignored with ordering "
        "webhook, which always has one batch in flight. The operator's --max-concurrency still caps the process.",
    )

    @property
    def max_queued_age_seconds(self) -> float | None:
        if self.max_queued_age is None:
            return None
        return float(int(self.max_queued_age[:-1]) * _AGE_UNITS[self.max_queued_age[-1]])
