"""Operations on one webhook: read its delivery log, send a test, resume, skip the held batch, redeliver.

One entry point for every way of asking: the HTTP operations API (``intake.operations``), the request annotations
(``handlers.operations``) and, through the API, ``kubectl webhook``. Every operation names who asked, leaves a line
in the delivery log (``AttemptRecord.note``) and a Kubernetes Event (through the ``OperationsObserver``, which the
service wires to the status writer), so nothing happens to a webhook's events silently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Mapping
from typing import Protocol

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.operations import (
    MAX_REDELIVERY,
    TEST_EVENT_TYPE,
    TEST_HEADER,
    OperationError,
    RedeliverRequest,
    RedeliveryResult,
    TestResult,
)
from webhook_operator.delivery.attempt import AttemptPipeline, record
from webhook_operator.delivery.dispatcher import Dispatcher
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.delivery.test_limits import TEST_BODY_CHARS, TEST_CEILING, TestLimits
from webhook_operator.store.base import (
    AttemptOutcome,
    AttemptQuery,
    AttemptRecord,
    LogStore,
    QueuedEvent,
    StoreUsage,
)

NORMAL, WARNING = "Normal", "Warning"
# Event reasons (CamelCase, like the status writer's).
TESTED, TEST_FAILED = "WebhookTested", "WebhookTestFailed"
RESUMED, SKIPPED, REDELIVERY_QUEUED = "DeliveryResumed", "HeldBatchSkipped", "RedeliveryQueued"
REJECTED = "OperationRejected"
#: Events decoded and matched per slice when ``to`` re-applies a target's filters (then the loop runs others).
_ADMIT_SLICE = 200


class OperationsObserver(Protocol):
    """Where operations report (``status.writer.StatusWriter`` implements it)."""

    def record_event(self, key: str, type: str, reason: str, message: str) -> None: ...

    def set_last_test(self, key: str, last_test: Mapping[str, object]) -> None: ...

    def set_handled(self, key: str, operation: str, value: str) -> None: ...


def synthetic_test_event(target: WebhookTarget, who: str, now: float) -> ChangeEvent:
    """A synthetic ChangeEvent that says what it is everywhere a receiver might look: eventType and entityType
    ``webhookTest``, ``"test": true``, a description, and (on the request) ``X-Webhook-Operator-Test: true``."""
    event_id = str(uuid.uuid4())
    namespace, _, name = target.key.partition("/")
    fqn = f"{namespace}.{name}"
    return ChangeEvent.model_validate({
        "id": event_id, "eventType": TEST_EVENT_TYPE, "entityType": TEST_EVENT_TYPE, "entityId": event_id,
        "entityFullyQualifiedName": fqn, "timestamp": int(now * 1000), "userName": who,
        "entity": {"id": event_id, "name": name, "fullyQualifiedName": fqn,
                   "description": "Test event sent by webhook-operator on request; no metadata changed."},
        "test": True,
    })  # fmt: skip


class OperationsStore(LogStore, Protocol):
    """The log, plus how full the store is (tests are refused near the space budget: ``delivery.test_limits``)."""

    async def usage(self) -> StoreUsage: ...


class Operations:
    """The user-facing operations: they check the request, act through the lane's worker or the attempt
    pipeline, and say what happened (an Event, ``status.lastTest``, a delivery-log line)."""

    def __init__(self, dispatcher: Dispatcher, store: OperationsStore, pipeline: AttemptPipeline, *,
                 observer: OperationsObserver) -> None:  # fmt: skip
        self._dispatcher = dispatcher
        self._store = store
        self._pipeline = pipeline
        self._observer = observer
        self.clock = pipeline.clock
        self._test_limits = TestLimits(self.clock)

    def target(self, key: str) -> WebhookTarget:
        try:
            return self._dispatcher.target(key)
        except KeyError:
            raise OperationError(404, f"webhook {key} not found (or not served by this operator)") from None

    # -- reading ---------------------------------------------------------------------------------------------

    async def deliveries(self, key: str, query: AttemptQuery) -> list[AttemptRecord]:
        self.target(key)
        return await self._store.attempts(key, query)

    # -- test ------------------------------------------------------------------------------------------------

    async def test(self, key: str, who: str, trigger: str = "") -> TestResult:
        """Send a synthetic event through the webhook's real format, headers and signature, straight to the
        attempt pipeline (not through the queue: it neither waits behind nor holds up real events). Logged with
        outcome ``test``; the result goes to ``status.lastTest`` and an Event."""
        target = self.target(key)
        usage = await self._store.usage()
        if usage.budget_bytes is not None and usage.used_bytes >= TEST_CEILING * usage.budget_bytes:
            full = f"{usage.used_bytes} of {usage.budget_bytes} bytes"
            raise OperationError(503, f"no test deliveries while the event store is nearly full ({full}): events first")
        self._test_limits.admit(key)
        try:
            event = synthetic_test_event(target, who, self.clock())
            attempt = await self._pipeline.run(target, [event], delivery=str(uuid.uuid4()), attempt=lambda: 1,
                                               test_by=who, extra_headers={TEST_HEADER: "true"})  # fmt: skip
            line = attempt.record
            if len(line.response_body) > TEST_BODY_CHARS:  # already masked: cutting cannot expose anything
                line = dataclasses.replace(line, response_body=line.response_body[:TEST_BODY_CHARS] + "…")
            await self._store.log(line)
        finally:
            self._test_limits.done(key)
        outcome = attempt.outcome
        result = TestResult(time=attempt.record.started_at, ok=outcome.ok, status_code=outcome.status_code,
                            latency_ms=outcome.duration_ms, error=outcome.error, event_id=event.id, requested_by=who,
                            trigger=trigger)  # fmt: skip
        if result.ok:  # the endpoint works again: an active fallback hands back (issue 14)
            await self._dispatcher.hand_back(key, f"a test delivery by {who} succeeded")
        self._observer.set_last_test(key, result.to_status())
        self._observer.record_event(key, NORMAL if result.ok else WARNING, TESTED if result.ok else TEST_FAILED,
                                    result.describe())  # fmt: skip
        return result

    # -- recovery --------------------------------------------------------------------------------------------

    async def resume(self, key: str, who: str) -> str:
        target = self.target(key)
        if target.config_error:
            raise OperationError(409, f"cannot resume: configuration error: {target.config_error}")
        snapshot = self._dispatcher.snapshot(key)
        if not await self._dispatcher.resume(key, who):
            state = snapshot.state.value if snapshot else "unknown"
            raise OperationError(409, f"nothing to resume: no batch is held (status {state})")
        message = f"delivery resumed by {who}: the held batch goes first, then the rest in order"
        self._observer.record_event(key, NORMAL, RESUMED, message)
        return message

    async def skip(self, key: str, who: str) -> list[str]:
        self.target(key)
        skipped = await self._dispatcher.skip(key, who)
        if not skipped:
            raise OperationError(409, "nothing to skip: no batch is held")
        ids = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        self._observer.record_event(key, NORMAL, SKIPPED,
                                    f"held batch of {len(skipped)} event(s) skipped by {who}: {ids}")  # fmt: skip
        return skipped

    async def redeliver(self, key: str, request: RedeliverRequest, who: str) -> RedeliveryResult:
        """Queue past events of ``key`` again, in the order the operator accepted them, behind whatever the target
        has queued. Only events that were routed to ``key`` (issue 13, finding 3): by ids, those the store shows
        routed to it (queued for it, in its delivery log or its dead letters); by time, the events it delivered or
        skipped that were accepted in the range. An id not routed to ``key`` is reported in ``missing`` exactly
        like an id never accepted, so the answer reveals nothing of other webhooks' events.

        The target is ``key`` itself or ``request.to`` in the same namespace. Events go to another webhook only if
        its filters admit them, as if the intake had routed them there: a redelivery can replay an event for a
        webhook that would have been sent it, never widen what it receives; the rest is reported in
        ``filtered``. Whether the caller may use ``to`` at all is the caller's check (HTTP: ``patch`` on the
        target; annotations: refused, see ``delivery.annotations``)."""
        self.target(key)
        namespace = key.partition("/")[0]
        target_key = f"{namespace}/{request.to}" if request.to else key
        target = self.target(target_key)
        if not target.spec.enabled:
            raise OperationError(409, f"cannot redeliver to {target_key}: it is disabled")
        if request.event_ids:
            found = await self._store.routed_events(key, request.event_ids)
            known = {e.event_id for e in found}
            missing = [i for i in request.event_ids if i not in known]
        else:
            found = await self._store.delivered_events(key, request.since, request.until, MAX_REDELIVERY + 1)
            missing = []
            if len(found) > MAX_REDELIVERY:
                raise OperationError(400, f"the range holds more than {MAX_REDELIVERY} events: narrow it")
        if not found:
            raise OperationError(409, "nothing to redeliver: " + (
                f"none of these events was routed to {key} (never accepted, pruned after the retention period, "
                "or not one of its events)" if request.event_ids
                else "no event of this webhook was delivered or skipped in that range"))  # fmt: skip
        filtered: list[str] = []
        if target_key != key:
            found, filtered = await self._admitted(target_key, found)
            if not found:
                raise OperationError(409, f"nothing to redeliver: none of the {len(filtered)} event(s) matches the "
                                     f"event filters of {target_key}")  # fmt: skip
        ids = [e.event_id for e in found]
        note = f"redelivery of {len(ids)} event(s) requested by {who}" + (f" from {key}" if target_key != key else "")
        line = record(target_key, AttemptOutcome.REDELIVERY_QUEUED, event_ids=ids, started_at=self.clock(), note=note)
        queued = await self._dispatcher.redeliver(target_key, ids, line)
        message = f"{len(queued)} event(s) queued for redelivery to {target_key} by {who} ({request.describe()})"
        if filtered:
            message += f"; {len(filtered)} not sent: {target_key}'s filters do not admit them"
        if target_key != key:
            await self._store.log(record(
                key, AttemptOutcome.REDELIVERY_QUEUED, event_ids=queued, started_at=self.clock(),
                note=f"redelivery of {len(queued)} event(s) to {target_key} requested by {who}",
            ))  # fmt: skip
            self._observer.record_event(target_key, NORMAL, REDELIVERY_QUEUED, message)
        self._observer.record_event(key, NORMAL, REDELIVERY_QUEUED, message)
        return RedeliveryResult(target=target_key, event_ids=queued, missing=missing, filtered=filtered)

    async def _admitted(self, key: str, events: list[QueuedEvent]) -> tuple[list[QueuedEvent], list[str]]:
        """``events`` split by whether ``key``'s compiled filters (the ones the intake routes by) admit them. An
        event that no longer decodes is not admitted. Parsed in slices with a yield between, so up to
        ``MAX_REDELIVERY`` large events never hold the event loop for long."""
        filters = self._dispatcher.worker(key).lane.filters
        admitted: list[QueuedEvent] = []
        refused: list[str] = []
        for start in range(0, len(events), _ADMIT_SLICE):
            for entry in events[start : start + _ADMIT_SLICE]:
                try:
                    ok = filters.matches(ChangeEvent.model_validate_json(entry.body))
                except (ValueError, RecursionError):  # pydantic's ValidationError is a ValueError
                    ok = False
                if ok:
                    admitted.append(entry)
                else:
                    refused.append(entry.event_id)
            await asyncio.sleep(0)
        return admitted, refused
