"""Operations asked for through request annotations on the Webhook (``docs/operations.md``).

Setting an annotation to a value the operator has not acted on yet asks for that operation. The last handled value
per operation is remembered here and in ``status.handledAnnotations``, so a restart, a resync or a re-apply of the
same manifest repeats nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from webhook_operator.api.operations import (
    ANNOTATIONS,
    OPERATIONS,
    REDELIVER,
    RESUME,
    SKIP,
    TEST,
    OperationError,
    parse_redeliver,
)
from webhook_operator.delivery.operations import REJECTED, WARNING, Operations, OperationsObserver

log = logging.getLogger(__name__)


class AnnotationRequests:
    def __init__(self, operations: Operations, observer: OperationsObserver) -> None:
        self._ops = operations
        self._observer = observer
        self._handled: dict[str, tuple[str, dict[str, str]]] = {}  # key -> (uid, operation -> last handled value)

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
            await self._ops.test(key, who, trigger=value)
        elif op == RESUME:
            await self._ops.resume(key, who)
        elif op == SKIP:
            await self._ops.skip(key, who)
        elif op == REDELIVER:
            try:
                request = parse_redeliver(value, self._ops.clock())
            except ValueError as exc:
                raise OperationError(400, f"invalid value: {exc}") from None
            name = key.partition("/")[2]
            if request.to and request.to != name:
                raise OperationError(403, refuse_to(name, request.to))
            await self._ops.redeliver(key, request, who)


def refuse_to(name: str, to: str) -> str:
    """Why an annotation may not redeliver to another Webhook (issue 13, finding 11).

    Over HTTP, ``to`` needs ``patch`` on the target as well as on the source, checked for the caller's own
    identity (SubjectAccessReview). An annotation proves only that its author may patch *this* Webhook: the API
    server records the field manager (``kubectl-annotate``, ``argocd-controller``), not the user, so nothing could
    be reviewed for the target, and RBAC may well grant ``patch`` on this Webhook alone (``resourceNames``).
    Acting on it would let that author push events into a Webhook they may not operate; guessing the user from
    ``managedFields`` would be a check in name only. So ``to`` is refused here and the message says where it
    works."""
    return (f"to={to}: an annotation cannot redeliver to another Webhook, because that needs 'patch' on {to} too "
            "and an annotation does not say who set it; use "
            f"'kubectl webhook redeliver {name} --to {to} ...' or the HTTP API, which check it")  # fmt: skip
