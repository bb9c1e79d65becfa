"""What the status writer knows about one webhook, and the status patch it builds from that (no I/O, no timing).

``writer`` decides *when* to patch (with ``schedule``); this module decides *what*: the complete status a webhook
needs now (``summary.summarize`` plus ``lastTest`` and ``handledAnnotations``), whether that differs from what the
API server already has, and which parts of it make a change urgent. Keeping the two apart keeps the writer about
debouncing, rate capping and retries, and lets the patch contents change without touching that machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook_operator.api.outcomes import WebhookSnapshot
from webhook_operator.status.summary import NO_CONDITIONS, OperatorConditions, pruned, summarize, with_operations

#: The status fields of the resource's own version history (``api.history``).
HISTORY_FIELDS = ("version", "updatedAt", "updatedBy", "changeDescription")

#: The parts of an entry whose change is a transition worth writing at once (see ``schedule``).
Signature = tuple[str | None, str | None, tuple[str, ...], int | None, int]


@dataclass
class Entry:
    key: str
    namespace: str
    name: str
    snapshot: WebhookSnapshot | None = None
    generation: int | None = None
    uid: str | None = None
    operator: OperatorConditions = NO_CONDITIONS
    written: dict[str, Any] | None = None  # last status written or observed (pruned: as the API server stores it)
    written_signature: Signature | None = None
    last_test: dict[str, Any] | None = None  # status.lastTest
    handled: dict[str, str] = field(default_factory=dict)  # status.handledAnnotations
    #: status.version/updatedAt/updatedBy/changeDescription, once the reconciler computed them (api.history)
    history: dict[str, Any] | None = None
    operations: int = 0  # bumped by every operation result, so it is written at once

    @classmethod
    def for_key(cls, key: str) -> Entry:
        namespace, _, name = key.partition("/")
        if not namespace or not name:
            raise ValueError(f"webhook key must be 'namespace/name', got {key!r}")
        return cls(key, namespace, name)

    def signature(self) -> Signature:
        state = self.snapshot.state.value if self.snapshot is not None else None
        op = self.operator
        return (state, op.configuration_error, op.warnings, self.generation, self.operations)

    @property
    def urgent(self) -> bool:
        """Whether the latest change is a transition (vs counters, timestamps, messages) since the last write."""
        return self.signature() != self.written_signature

    def adopt(self, current_status: Mapping[str, Any]) -> None:
        """Take over the status the resource already has, once: a restarted operator keeps transition times, the
        last test and the handled annotations, and does not rewrite an unchanged status."""
        if self.written is not None:
            return
        self.written = pruned(dict(current_status))
        last_test, handled = current_status.get("lastTest"), current_status.get("handledAnnotations")
        if isinstance(last_test, Mapping) and self.last_test is None:
            self.last_test = dict(last_test)
        if isinstance(handled, Mapping):
            self.handled = {**{k: v for k, v in handled.items() if isinstance(v, str)}, **self.handled}
        if self.history is None and "version" in current_status:
            self.history = {k: current_status[k] for k in HISTORY_FIELDS if k in current_status}

    def desired_status(self, now: float) -> dict[str, Any] | None:
        """The complete status as of wall-clock ``now``, or None while there is nothing to say yet (no snapshot
        from the engine and no configuration problem)."""
        if self.snapshot is None and self.operator.configuration_error is None:
            return None
        status = summarize(self.snapshot, generation=self.generation, now=now, operator=self.operator,
                           previous=self.written)  # fmt: skip
        status = with_operations(status, self.last_test, self.handled)
        if self.history is not None:  # only ever set (a new version replaces it), so unknown means "keep"
            status.update(self.history)
        return status

    def is_written(self, status: dict[str, Any]) -> bool:
        """Whether the API server already holds ``status`` (as it stores it: nulls pruned)."""
        return bool(pruned(status) == self.written)

    def mark_written(self, status: dict[str, Any], signature: Signature) -> None:
        """``status`` landed (or was rejected: then it is not resent until the status changes)."""
        self.written, self.written_signature = pruned(status), signature


@dataclass(frozen=True)
class Write:
    """One status patch on its way: the entry, the scheduler version it carries and the body it sends."""

    entry: Entry
    version: int
    status: dict[str, Any]
    signature: Signature
