"""The composition root of the data path: store → dispatcher (attempt pipeline, sender) → status, plus the
operations and the reconciler, built from protocols.

Everything that builds the engine builds it here — the operator (``service.OperatorService`` adds Kubernetes,
the HTTP servers and pruning), the unit tests, ``make demo`` through the operator, and both benchmarks — so a
wiring change is made once and a test exercises the same graph that production runs. Kubernetes is optional:
without it, status goes to whatever ``StatusPort`` the caller passes (a recorder in tests, nothing by default)
and Secrets come from any ``SecretReader``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from webhook_operator import __version__
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.outcomes import StateObserver, WebhookSnapshot
from webhook_operator.delivery.annotations import AnnotationRequests
from webhook_operator.delivery.attempt import AttemptPipeline
from webhook_operator.delivery.dispatcher import Dispatcher, QueueLimits, SubmitResult
from webhook_operator.delivery.operations import Operations, OperationsObserver
from webhook_operator.delivery.retry import RetryPolicy
from webhook_operator.delivery.sender import Sender
from webhook_operator.delivery.template_pool import TemplateLimits, TemplatePool
from webhook_operator.metrics import Metrics
from webhook_operator.reconcile import Reconciler, SecretReader, StatusSink
from webhook_operator.status.summary import OperatorConditions
from webhook_operator.store.base import Store

log = logging.getLogger(__name__)

USER_AGENT = f"webhook-operator/{__version__}"


class StatusPort(StateObserver, StatusSink, OperationsObserver, Protocol):
    """Everything the engine tells about a webhook (``status.writer.StatusWriter`` implements it)."""


class NullStatus:
    """Status that goes nowhere: benchmarks and tests that do not look at it."""

    def webhook_changed(self, snapshot: WebhookSnapshot) -> None: ...

    def set_generation(self, key: str, generation: int | None, *, uid: str | None = None,
                       current_status: Mapping[str, Any] | None = None) -> None: ...  # fmt: skip

    def set_extra(self, key: str, conditions: OperatorConditions) -> None: ...

    def set_history(self, key: str, history: Mapping[str, Any]) -> None: ...

    def record_event(self, key: str, type: str, reason: str, message: str) -> None: ...

    def forget(self, key: str) -> None: ...

    def set_last_test(self, key: str, last_test: Mapping[str, object]) -> None: ...

    def set_handled(self, key: str, operation: str, value: str) -> None: ...


class NoSecrets:
    """A cluster without Secrets: every reference is reported missing (a configuration error, never a crash)."""

    async def read(self, namespace: str, name: str) -> None:
        return None


class _Fanout(NullStatus):
    """Snapshots and removals go to the metrics as well as to status (so a deleted webhook's series go too)."""

    def __init__(self, status: StatusPort, metrics: Metrics) -> None:
        self._status, self._metrics = status, metrics

    def webhook_changed(self, snapshot: WebhookSnapshot) -> None:
        self._metrics.webhook_changed(snapshot)
        self._status.webhook_changed(snapshot)

    def set_generation(self, key: str, generation: int | None, *, uid: str | None = None,
                       current_status: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        self._status.set_generation(key, generation, uid=uid, current_status=current_status)

    def set_extra(self, key: str, conditions: OperatorConditions) -> None:
        self._status.set_extra(key, conditions)

    def set_history(self, key: str, history: Mapping[str, Any]) -> None:
        self._status.set_history(key, history)

    def record_event(self, key: str, type: str, reason: str, message: str) -> None:
        self._status.record_event(key, type, reason, message)

    def forget(self, key: str) -> None:
        self._status.forget(key)
        self._metrics.forget(key)


class CountingSubmitter:
    """The intake's submitter: the dispatcher, with the accepted/duplicate counts taken from the result object
    (not by parsing the 202 body the intake wrote)."""

    def __init__(self, dispatcher: Dispatcher, metrics: Metrics) -> None:
        self._dispatcher = dispatcher
        self._accepted = metrics.intake_events.labels("accepted")
        self._duplicates = metrics.intake_events.labels("duplicate")

    async def submit(self, events: Sequence[ChangeEvent], bodies: Sequence[bytes] | None = None) -> SubmitResult:
        result = await self._dispatcher.submit(events, bodies)
        if result.accepted:  # adding 0 changes nothing, and each inc takes the counter's lock
            self._accepted.inc(result.accepted)
        if result.duplicates:
            self._duplicates.inc(result.duplicates)
        return result


@dataclass
class Graph:
    store: Store
    sender: Sender
    metrics: Metrics
    pipeline: AttemptPipeline
    dispatcher: Dispatcher
    operations: Operations
    annotations: AnnotationRequests
    reconciler: Reconciler
    submitter: CountingSubmitter
    templates: TemplatePool

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        """Stop delivering (recording what was delivered), then release the template workers, the sender and the
        store."""
        await self.dispatcher.stop()
        await self.templates.close()
        await self.sender.close()
        await self.store.close()


def build_graph(*, store: Store, sender: Sender, status: StatusPort | None = None, secrets: SecretReader | None = None,
                clock: Callable[[], float] = time.time, retry: RetryPolicy | None = None, max_concurrency: int = 64,
                user_agent: str = USER_AGENT, admins: tuple[str, ...] = (), ui_base_url: str | None = None,
                metrics: Metrics | None = None, queue_limits: QueueLimits | None = None,
                templates: TemplateLimits | None = None, shared: bool = False,
                webhooks_known: bool = True) -> Graph:  # fmt: skip
    """``shared``: work sharing between replicas (issue 15): the dispatcher delivers only the webhooks a
    ``sharing.manager.LeaseManager`` hands it; without one it delivers none."""
    metrics = metrics or Metrics()
    status = status or NullStatus()
    observers = _Fanout(status, metrics)
    pool = TemplatePool(templates)  # lazy: no worker process starts until a Custom template needs one
    pipeline = AttemptPipeline(sender, user_agent=user_agent, max_concurrency=max_concurrency, clock=clock,
                               on_attempt=metrics.attempt, templates=pool)  # fmt: skip
    dispatcher = Dispatcher(store, pipeline, retry=retry, observer=observers, limits=queue_limits, events=observers,
                            shared=shared, webhooks_known=webhooks_known)  # fmt: skip
    operations = Operations(dispatcher, store, pipeline, observer=status)
    reconciler = Reconciler(dispatcher, secrets or NoSecrets(), observers, admins=admins, ui_base_url=ui_base_url,
                            templates=pool)  # fmt: skip
    return Graph(store=store, sender=sender, metrics=metrics, pipeline=pipeline, dispatcher=dispatcher,
                 operations=operations, annotations=AnnotationRequests(operations, status), reconciler=reconciler,
                 submitter=CountingSubmitter(dispatcher, metrics), templates=pool)  # fmt: skip
