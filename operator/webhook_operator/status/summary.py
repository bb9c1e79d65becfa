"""Fold what the delivery engine and the operator know about a webhook into the resource's ``status`` (pure).

The result is the complete status as a camelCase dict that validates against ``WebhookStatus`` and the CRD. It is
meant to be sent as a JSON merge patch ``{"status": <result>}``, so it is *complete on purpose*: every field the
status can have is present, and a field that no longer applies is ``None`` (merge-patch null = delete the field).
That is how ``nextAttempt`` disappears once retries are over, without reading the resource first. Lists (the
conditions) are replaced whole by a merge patch, so conditions are always listed in full.

Conditions follow the kstatus conventions:

* ``Ready`` is always present. ``True`` only while the webhook is ``active`` and the operator has no configuration
  problem; ``False`` for disabled, awaitingRetry, failed, retryLimitReached or a configuration problem; ``Unknown``
  while nothing has been reported yet. Its reason is the engine's CamelCase reason (``Delivering``, ``Idle``,
  ``DeliveryFailing``, ``RetryLimitReached``, ``ConfigurationError``, ``Disabled``).
* ``Stalled`` is present (and ``True``) only when delivery cannot make progress without a human: ``failed``,
  ``retryLimitReached`` or a configuration problem. kstatus conditions are "abnormal-true": absent means False.
  ``awaitingRetry`` is *not* stalled — the operator is still retrying on its own.
* ``Reconciling`` is present (and ``True``) only while the operator knows the webhook but the delivery engine has
  not reported it yet. Every later state is a settled answer, so tools like ``kubectl wait`` and Flux health checks
  see a final verdict instead of a resource that is "progressing" forever during a receiver outage.

``lastTransitionTime`` changes only when a condition's ``status`` changes; reason and message updates keep it.
Secrets never get here: the engine masks reasons before reporting; messages are still truncated so a huge error
text cannot bloat the object.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webhook_operator.api.outcomes import Reason, WebhookSnapshot
from webhook_operator.api.text import truncate
from webhook_operator.api.webhook_status import WebhookState

#: Longest condition message, failure reason or Event message (``api.text.truncate`` marks the cut).
MAX_MESSAGE = 1024

READY = "Ready"
STALLED = "Stalled"
RECONCILING = "Reconciling"
PENDING = "Pending"  # reason while the engine has not reported the webhook yet

STALLED_STATES = frozenset({WebhookState.FAILED, WebhookState.RETRY_LIMIT_REACHED})

# metav1.Condition's rule for reasons; anything else falls back to the state's default reason.
_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
_DEFAULT_REASON = {
    WebhookState.ACTIVE: Reason.IDLE,
    WebhookState.DISABLED: Reason.DISABLED,
    WebhookState.FAILED: Reason.DELIVERY_FAILING,
    WebhookState.AWAITING_RETRY: Reason.DELIVERY_FAILING,
    WebhookState.RETRY_LIMIT_REACHED: Reason.RETRY_LIMIT_REACHED,
}
_DEFAULT_MESSAGE = {
    WebhookState.ACTIVE: "events are being delivered",
    WebhookState.DISABLED: "webhook is disabled (spec.enabled is false)",
    WebhookState.FAILED: "delivery failed",
    WebhookState.AWAITING_RETRY: "delivery failed; retrying",
    WebhookState.RETRY_LIMIT_REACHED: "delivery paused: retry limit reached",
}


@dataclass(frozen=True)
class OperatorConditions:
    """What the operator, not the delivery engine, knows about a webhook.

    ``configuration_error``: a problem only a human can fix (e.g. "Secret hmac not found"); it overrides the
    engine's verdict (Ready=False, Stalled=True, status ``failed``) because the engine may still be running the
    previous configuration. ``warnings``: notes appended to the Ready message (e.g. an inline ``secretKey``) that do
    not change readiness.
    """

    configuration_error: str | None = None
    warnings: tuple[str, ...] = ()


NO_CONDITIONS = OperatorConditions()


def rfc3339(timestamp: float, *, round_up: bool = False) -> str:
    """Whole-second RFC 3339 UTC with a ``Z``, like every Kubernetes timestamp. ``round_up`` for times in the
    future (``nextAttempt``) so the shown time is never earlier than the real one."""
    seconds = math.ceil(timestamp) if round_up else math.floor(timestamp)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reason(snapshot: WebhookSnapshot) -> str:
    return snapshot.reason if _REASON.match(snapshot.reason or "") else _DEFAULT_REASON[snapshot.state]


def _with_warnings(message: str, warnings: tuple[str, ...]) -> str:
    return "; ".join([part for part in (message, *(f"Warning: {w}" for w in warnings)) if part])


def _condition(
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    previous: Mapping[str, Mapping[str, Any]],
    now: float,
) -> dict[str, Any]:
    before = previous.get(type_)
    if before is not None and before.get("status") == status and before.get("lastTransitionTime"):
        since = str(before["lastTransitionTime"])
    else:
        since = rfc3339(now)
    condition: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": truncate(message, MAX_MESSAGE),
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def _previous_conditions(previous: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    conditions = (previous or {}).get("conditions") or []
    return {c["type"]: c for c in conditions if isinstance(c, Mapping) and "type" in c}


def _failure_details(snapshot: WebhookSnapshot) -> dict[str, Any] | None:
    s = snapshot
    failed = s.last_failed_at is not None or s.last_failed_status_code is not None or s.last_failed_reason
    if not failed and not s.dead_letters:
        return None
    retrying = s.state is WebhookState.AWAITING_RETRY and s.next_attempt_at is not None
    dead = s.dead_letters > 0
    return {
        "lastFailedAt": rfc3339(s.last_failed_at) if s.last_failed_at is not None else None,
        "lastFailedStatusCode": s.last_failed_status_code,
        "lastFailedReason": truncate(s.last_failed_reason, MAX_MESSAGE) if s.last_failed_reason else None,
        "nextAttempt": rfc3339(s.next_attempt_at, round_up=True) if retrying and s.next_attempt_at else None,
        # how many of this webhook's events are in the dead letters, and since when (issue 13, finding 4)
        "deadLetters": s.dead_letters if dead else None,
        "deadLetteredSince": rfc3339(s.dead_lettered_since) if dead and s.dead_lettered_since is not None else None,
        "lastDeadLetterReason": truncate(s.dead_letter_reason, MAX_MESSAGE) if dead and s.dead_letter_reason else None,
    }


def summarize(
    snapshot: WebhookSnapshot | None,
    *,
    generation: int | None,
    now: float,
    operator: OperatorConditions = NO_CONDITIONS,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The complete status for one webhook.

    ``generation`` is the ``metadata.generation`` the engine is running (``observedGeneration``); ``now`` is wall
    clock seconds for new transition times; ``previous`` is the status last written or read from the resource.
    """
    before = _previous_conditions(previous)
    config_error = operator.configuration_error
    if config_error is not None:
        state: WebhookState | None = WebhookState.FAILED
        ready = ("False", Reason.CONFIGURATION_ERROR, config_error or "configuration error")
        stalled: tuple[str, str] | None = (Reason.CONFIGURATION_ERROR, ready[2])
        reconciling = False
    elif snapshot is None:
        state = None
        ready = ("Unknown", PENDING, "waiting for the delivery engine to report this webhook")
        stalled, reconciling = None, True
    else:
        state = snapshot.state
        reason = _reason(snapshot)
        message = snapshot.message or _DEFAULT_MESSAGE[state]
        ready = ("True" if snapshot.ready else "False", reason, message)
        stalled = (reason, message) if state in STALLED_STATES else None
        reconciling = False

    status_, reason_, message_ = ready
    warnings = (*operator.warnings, *(snapshot.warnings if snapshot is not None else ()))
    conditions = [_condition(READY, status_, reason_, _with_warnings(message_, warnings), generation, before, now)]
    if stalled is not None:
        conditions.append(_condition(STALLED, "True", stalled[0], stalled[1], generation, before, now))
    if reconciling:
        conditions.append(_condition(RECONCILING, "True", PENDING, message_, generation, before, now))

    return {
        "observedGeneration": generation,
        "status": state.value if state is not None else None,
        "conditions": conditions,
        "failureDetails": _failure_details(snapshot) if snapshot is not None else None,
        "lastSuccessfulAt": rfc3339(snapshot.last_successful_at)
        if snapshot is not None and snapshot.last_successful_at is not None
        else None,
        "counts": {"delivered": snapshot.delivered, "failed": snapshot.failed, "pending": snapshot.pending}
        if snapshot is not None
        else None,
        **_fallback(snapshot),
    }


def _fallback(snapshot: WebhookSnapshot | None) -> dict[str, Any]:
    """``fallbackActive`` (only when spec.fallback is set) and, while active, ``fallbackReason`` (issue 14)."""
    if snapshot is None or not (snapshot.fallback_configured or snapshot.fallback_to):
        return {"fallbackActive": None, "fallbackReason": None}
    reason = None
    if snapshot.fallback_to:
        why = snapshot.last_failed_reason or snapshot.state.value
        reason = truncate(f"{snapshot.state.value} ({why}): events go to {snapshot.fallback_to}", MAX_MESSAGE)
    return {"fallbackActive": bool(snapshot.fallback_to), "fallbackReason": reason}


def with_operations(
    status: dict[str, Any], last_test: Mapping[str, Any] | None, handled: Mapping[str, str] | None
) -> dict[str, Any]:
    """``status`` plus the operations' fields, ``lastTest`` and ``handledAnnotations``, when known. Unlike the
    rest they are only ever set, never cleared, so when unknown they are left out of the merge patch (kept)."""
    if last_test:
        status["lastTest"] = dict(last_test)
    if handled:
        status["handledAnnotations"] = dict(handled)
    return status


def pruned(value: Any) -> Any:
    """``value`` without ``None`` entries (recursively): what the API server stores after a merge patch, so a
    status read back from the resource compares equal to the one that was written."""
    if isinstance(value, Mapping):
        return {k: pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value
