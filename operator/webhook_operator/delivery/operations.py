"""Operations on one webhook: read its delivery log, send a test, resume, skip the held batch, redeliver.

One entry point for every way of asking: the HTTP operations API (``intake.operations``), the request annotations
(``handlers.operations``) and, through the API, ``kubectl webhook``. Every operation names who asked, leaves a line
in the delivery log (``AttemptRecord.note``) and a Kubernetes Event (through the ``OperationsObserver``, which the
service wires to the status writer), so nothing happens to a webhook's events silently.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Protocol

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.operations import (
    ANNOTATIONS,
    MAX_REDELIVERY,
    OPERATIONS,
    REDELIVER,
    RESUME,
    SKIP,
    TEST,
    TEST_EVENT_TYPE,
    TEST_HEADER,
    OperationError,
    RedeliverRequest,
    RedeliveryResult,
    TestResult,
    parse_redeliver,
)
from webhook_operator.delivery.dispatcher import Dispatcher
from webhook_operator.delivery.request import build_request
from webhook_operator.delivery.sender import Outcome, OutcomeKind, Sender
from webhook_operator.delivery.target import WebhookTarget, mask, mask_credentials
from webhook_operator.formats.base import FormatError
from webhook_operator.store.base import AttemptOutcome, AttemptQuery, AttemptRecord, Store

log = logging.getLogger(__name__)

NORMAL, WARNING = "Normal", "Warning"
# Event reasons (CamelCase, like the status writer's).
TESTED, TEST_FAILED = "WebhookTested", "WebhookTestFailed"
RESUMED, SKIPPED, REDELIVERY_QUEUED = "DeliveryResumed", "HeldBatchSkipped", "RedeliveryQueued"
REJECTED = "OperationRejected"


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


class Operations:
    def __init__(self, dispatcher: Dispatcher, store: Store, sender: Sender, *, observer: OperationsObserver,
                 user_agent: str, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self._dispatcher = dispatcher
        self._store = store
        self._sender = sender
        self._observer = observer
        self._user_agent = user_agent
        self._clock = clock
        self._handled: dict[str, tuple[str, dict[str, str]]] = {}  # key -> (uid, operation -> last handled value)

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
        sender (not through the queue: it neither waits behind nor holds up real events). Logged with outcome
        ``test``; the result goes to ``status.lastTest`` and an Event."""
        target = self.target(key)
        started = self._clock()
        event = synthetic_test_event(target, who, started)
        delivery_id = str(uuid.uuid4())
        if target.config_error:
            outcome = Outcome(OutcomeKind.PERMANENT, None, 0.0, f"configuration error: {target.config_error}")
        else:
            try:
                request = build_request(target, [event], delivery_id, started, user_agent=self._user_agent,
                                        extra_headers={TEST_HEADER: "true"})  # fmt: skip
            except FormatError as exc:
                outcome = Outcome(OutcomeKind.PERMANENT, None, 0.0, f"payload could not be rendered: {exc}")
            else:
                outcome = await self._sender.send(request)
        secrets = target.sensitive_values
        error = mask(outcome.error, secrets)
        result = TestResult(time=started, ok=outcome.ok, status_code=outcome.status_code,
                            latency_ms=outcome.duration_ms, error=error, event_id=event.id, requested_by=who,
                            trigger=trigger)  # fmt: skip
        await self._store.log(AttemptRecord(
            webhook=key, delivery_id=delivery_id, event_ids=[event.id], attempt=1, started_at=started,
            duration_ms=outcome.duration_ms, outcome=AttemptOutcome.TEST, status_code=outcome.status_code,
            error=error, response_body=mask_credentials(mask(outcome.response_body, secrets) or ""),
            note=f"test requested by {who}",
        ))  # fmt: skip
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
        """Queue past events again, in the order the operator accepted them, behind whatever the target has
        queued. By ids: any event still stored. By time: the events ``key`` delivered or skipped that were
        accepted in the range. The target is ``key`` itself or ``request.to`` in the same namespace."""
        self.target(key)
        namespace = key.partition("/")[0]
        target_key = f"{namespace}/{request.to}" if request.to else key
        target = self.target(target_key)
        if not target.spec.enabled:
            raise OperationError(409, f"cannot redeliver to {target_key}: it is disabled")
        if request.event_ids:
            found = await self._store.events_by_id(request.event_ids)
            known = {e.event_id for e in found}
            missing = [i for i in request.event_ids if i not in known]
        else:
            found = await self._store.delivered_events(key, request.since, request.until, MAX_REDELIVERY + 1)
            missing = []
            if len(found) > MAX_REDELIVERY:
                raise OperationError(400, f"the range holds more than {MAX_REDELIVERY} events: narrow it")
        ids = [e.event_id for e in found]
        if not ids:
            raise OperationError(409, "nothing to redeliver: " + ("none of these events is stored (pruned after "
                                 "the retention period?)" if request.event_ids else "no event of this webhook was "
                                 "delivered or skipped in that range"))  # fmt: skip
        note = f"redelivery of {len(ids)} event(s) requested by {who}" + (f" from {key}" if target_key != key else "")
        record = AttemptRecord(webhook=target_key, delivery_id="-", event_ids=ids, attempt=0,
                               started_at=self._clock(), duration_ms=0.0, outcome=AttemptOutcome.REDELIVERY_QUEUED,
                               note=note)  # fmt: skip
        queued = await self._dispatcher.redeliver(target_key, ids, record)
        message = f"{len(queued)} event(s) queued for redelivery to {target_key} by {who} ({request.describe()})"
        if target_key != key:
            await self._store.log(AttemptRecord(
                webhook=key, delivery_id="-", event_ids=queued, attempt=0, started_at=self._clock(),
                duration_ms=0.0, outcome=AttemptOutcome.REDELIVERY_QUEUED,
                note=f"redelivery of {len(queued)} event(s) to {target_key} requested by {who}",
            ))  # fmt: skip
            self._observer.record_event(target_key, NORMAL, REDELIVERY_QUEUED, message)
        self._observer.record_event(key, NORMAL, REDELIVERY_QUEUED, message)
        return RedeliveryResult(target=target_key, event_ids=queued, missing=missing)

    # -- request annotations ---------------------------------------------------------------------------------

    async def annotations_changed(
        self, key: str, uid: str, annotations: Mapping[str, str], *, handled: Mapping[str, str] | None,
        who: Callable[[str], str],
    ) -> list[str]:  # fmt: skip
        """Act on every operation annotation whose value differs from the last one handled (remembered here and
        in ``status.handledAnnotations``; ``handled`` seeds it from the resource's status the first time a webhook
        is seen, so a restart repeats nothing). The value is marked handled before acting: a request runs at
        most once, also when it fails (the failure is an Event). Returns the operations acted on."""
        known = self._handled.get(key)
        if known is None or known[0] != uid:
            known = self._handled[key] = (uid, {k: v for k, v in (handled or {}).items() if isinstance(v, str)})
        done = known[1]
        acted: list[str] = []
        for op in OPERATIONS:
            value = annotations.get(ANNOTATIONS[op])
            if value is None or done.get(op) == value:
                continue
            done[op] = value
            self._observer.set_handled(key, op, value)
            requester = who(op)
            acted.append(op)
            try:
                await self._run(op, key, value, requester)
            except OperationError as exc:
                self._observer.record_event(key, WARNING, REJECTED,
                                            f"{op} requested by {requester} ({ANNOTATIONS[op]}={value!r}): "
                                            f"{exc.message}")  # fmt: skip
            except Exception:  # one failing request must not block the others or kopf's handler
                log.exception("%s of %s requested by %s failed", op, key, requester)
                self._observer.record_event(key, WARNING, REJECTED, f"{op} requested by {requester} failed "
                                            "(see the operator log)")  # fmt: skip
        return acted

    def forget(self, key: str) -> None:
        self._handled.pop(key, None)

    async def _run(self, op: str, key: str, value: str, who: str) -> None:
        log.info("%s of %s requested by %s (annotation value %r)", op, key, who, value)
        if op == TEST:
            await self.test(key, who, trigger=value)
        elif op == RESUME:
            await self.resume(key, who)
        elif op == SKIP:
            await self.skip(key, who)
        elif op == REDELIVER:
            try:
                request = parse_redeliver(value, self._clock())
            except ValueError as exc:
                raise OperationError(400, f"invalid value: {exc}") from None
            await self.redeliver(key, request, who)
