"""Related webhooks (issue 14): resolving ``spec.fallback`` and ``spec.triggers``, refusing cycles, and building
the events a webhook's delivery-state transitions become.

Pure and synchronous, so the lane, the worker and the dispatcher only call in: the dispatcher keeps one
``RelatedGraph`` of every registered webhook that names another, asks it where a stalled webhook's events may go
(``fallback``) and who hears about a transition (``triggers``), and turns a lane's ``transition`` into a
``trigger_event``.

Acceptance. The target of a fallback or trigger must list the source in its ``acceptFrom`` (or ``*``): those events
bypass its filters and go out with its secret, and may patch one Webhook must not mean may post through another.
A relation the target does not accept is not used, and the source carries a warning naming the field to set.

Cycles. A fallback cycle (a → b → a, a → a, or longer) would move events round in a circle; a trigger cycle (a
triggers b triggers a) could answer each failure with another, and so could a mixed one (a triggers b, b's fallback
is a). Cycles are found in the combined graph (one edge per accepted fallback and trigger) and refused edge by
edge: a fallback or trigger edge that lies on a cycle is not used; each such webhook carries a warning naming the
cycle (the Ready condition's message and a Warning Event). Nodes outside the cycle keep working: a → b where
b ⇄ c is refused only for b and c.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.related import ACCEPT_FROM_ANY, TRIGGER_EVENT_TYPES, WEBHOOK_ENTITY_TYPE, TriggerOn
from webhook_operator.api.text import truncate
from webhook_operator.api.webhook import WebhookSpec, WebhookState
from webhook_operator.delivery.retry import PAUSED_FAILED, PAUSED_LIMIT
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.store.base import QueuedEvent, RetryState

if TYPE_CHECKING:
    from webhook_operator.delivery.lane import Lane

#: Longest error text carried by a trigger event. The text is the receiver's (its reason phrase, its body), so it is
#: kept short: enough to recognise the failure, too little to carry a message of the receiver's choosing.
MAX_ERROR = 200
ARROW = " → "


def delivery_state(retry: RetryState) -> WebhookState:
    """A lane's delivery state from its retry state alone (spec.enabled and configuration errors are not delivery
    transitions, so they trigger nothing)."""
    if retry.paused == PAUSED_LIMIT:
        return WebhookState.RETRY_LIMIT_REACHED
    if retry.paused == PAUSED_FAILED:
        return WebhookState.FAILED
    return WebhookState.AWAITING_RETRY if retry.held_qids else WebhookState.ACTIVE


_STALLED = frozenset({WebhookState.AWAITING_RETRY, WebhookState.RETRY_LIMIT_REACHED, WebhookState.FAILED})


def transition(before: WebhookState, after: WebhookState) -> TriggerOn | None:
    """What a change of delivery state means for triggers: active → awaitingRetry/failed is ``failing``, anything →
    retryLimitReached is ``retryLimitReached``, a stalled state → active is ``recovered``; the rest (resume back to
    awaitingRetry, awaitingRetry → failed) is not a new transition."""
    if before is after:
        return None
    if after is WebhookState.RETRY_LIMIT_REACHED:
        return TriggerOn.RETRY_LIMIT_REACHED
    if before is WebhookState.ACTIVE and after in _STALLED:
        return TriggerOn.FAILING
    if after is WebhookState.ACTIVE and before in _STALLED:
        return TriggerOn.RECOVERED
    return None


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def find_cycles(edges: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """For every node that lies on a cycle, one cycle through it as a path ``[node, …, node]`` (shortest first).
    Breadth-first from each node: the graphs are the few webhooks that name another, so this stays cheap."""
    graph = {node: list(dict.fromkeys(targets)) for node, targets in edges.items()}
    found: dict[str, list[str]] = {}
    for start in graph:
        parents: dict[str, str] = {}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    found[start] = [start, *reversed(path[:-1]), start] if node != start else [start, start]
                    queue.clear()
                    break
                if nxt not in parents and nxt != start:
                    parents[nxt] = node
                    queue.append(nxt)
    return found


def _reaches(edges: Mapping[str, Iterable[str]], source: str, goal: str) -> bool:
    seen, queue = {source}, deque([source])
    while queue:
        node = queue.popleft()
        if node == goal:
            return True
        for nxt in edges.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return False


class RelatedGraph:
    """Who names whom: every registered webhook's fallback, triggers and ``acceptFrom``, by key. A relation is used
    only if its target accepts the source and it lies on no cycle of the combined graph (a fallback or trigger edge
    each): a triggers b while b's fallback is a would turn each transition of a into an event that b hands to a,
    whose delivery causes the next transition — events without input. Without a cycle, trigger events only flow
    downstream and end, so refusing combined cycles is enough to bound them."""

    def __init__(self) -> None:
        self._fallback: dict[str, str] = {}
        self._triggers: dict[str, dict[str, frozenset[TriggerOn]]] = {}
        self._accept: dict[str, frozenset[str]] = {}  # every registered key -> the names it accepts from
        self._refused: dict[str, dict[str, list[str]]] = {}  # key -> target -> the cycle its edge lies on
        self._unaccepted: dict[str, list[str]] = {}  # key -> registered targets that do not accept it

    def update(self, key: str, spec: WebhookSpec | None) -> set[str]:
        """Record ``key``'s related webhooks and acceptance (None: it is gone). Returns the keys whose warnings
        changed (a cycle closed or opened, acceptance given or withdrawn), so their status can say so."""
        namespace = key.partition("/")[0]
        before = {k: self.warnings(k) for k in self._warned()}
        self._fallback.pop(key, None)
        self._triggers.pop(key, None)
        self._accept.pop(key, None)
        if spec is not None:
            self._accept[key] = frozenset(spec.accept_from or ())
        if spec is not None and spec.fallback is not None:
            self._fallback[key] = _key(namespace, spec.fallback.name)
        if spec is not None and spec.triggers:
            triggers: dict[str, frozenset[TriggerOn]] = {}
            for ref in spec.triggers:
                target = _key(namespace, ref.name)
                triggers[target] = triggers.get(target, frozenset()) | frozenset(ref.on)
            self._triggers[key] = triggers
        self._recompute()
        after = {k: self.warnings(k) for k in self._warned()}
        return {k for k in {*before, *after} if before.get(k, ()) != after.get(k, ())}

    def _warned(self) -> set[str]:
        return {*self._refused, *self._unaccepted}

    def accepts(self, target: str, source: str) -> bool:
        """Whether ``target`` (registered) lists ``source`` (same namespace) or ``*`` in its acceptFrom. A webhook
        naming itself needs no acceptance (it is refused as a cycle anyway)."""
        if target == source:
            return True
        accepted = self._accept.get(target)
        t_ns, _, _ = target.partition("/")
        s_ns, _, s_name = source.partition("/")
        return accepted is not None and t_ns == s_ns and (ACCEPT_FROM_ANY in accepted or s_name in accepted)

    def _recompute(self) -> None:
        named: dict[str, set[str]] = {}
        for key, to in self._fallback.items():
            named.setdefault(key, set()).add(to)
        for key, triggers in self._triggers.items():
            named.setdefault(key, set()).update(triggers)
        unaccepted: dict[str, list[str]] = {}
        edges: dict[str, list[str]] = {}
        for key, targets in named.items():
            for to in sorted(targets):
                if self.accepts(to, key):
                    edges.setdefault(key, []).append(to)
                elif to in self._accept:  # registered and not accepting (an absent one is simply absent)
                    unaccepted.setdefault(key, []).append(to)
        cycles = find_cycles(edges)
        refused: dict[str, dict[str, list[str]]] = {}
        for key in cycles:
            for to in edges[key]:
                if _reaches(edges, to, key):  # this edge lies on a cycle
                    refused.setdefault(key, {})[to] = cycles[key]
        self._refused, self._unaccepted = refused, unaccepted

    def _usable(self, key: str, to: str) -> bool:
        return to not in self._refused.get(key, {}) and self.accepts(to, key)

    def fallback(self, key: str) -> str | None:
        """Where ``key``'s events go while it is stalled; None without a fallback, when the fallback does not accept
        them, or when the fallback lies on a cycle."""
        to = self._fallback.get(key)
        return to if to is not None and self._usable(key, to) else None

    def triggers(self, key: str, kind: TriggerOn) -> list[str]:
        """The webhooks told about ``key``'s ``kind`` transition (edges not accepted or on a cycle left out)."""
        return [t for t, kinds in self._triggers.get(key, {}).items() if kind in kinds and self._usable(key, t)]

    def sources(self, target: str) -> list[str]:
        """The webhooks whose fallback is ``target`` (kicked when it appears or recovers)."""
        return [k for k, v in self._fallback.items() if v == target]

    def event_reason(self, key: str) -> str:
        """The Kubernetes Event reason for ``key``'s warnings: a cycle, else a missing acceptance."""
        return "RelatedWebhookCycle" if key in self._refused else "RelatedWebhookNotAccepted"

    def warnings(self, key: str) -> tuple[str, ...]:
        out: list[str] = []
        name = key.partition("/")[2]
        for to in self._unaccepted.get(key, ()):
            out.append(f"{to} does not accept fallback or trigger events from {name}: add {name} to {to}'s "
                       "spec.acceptFrom")  # fmt: skip
        for to, path in self._refused.get(key, {}).items():
            kind = self._cycle_kind(path)
            if self._fallback.get(key) == to:
                out.append(f"spec.fallback refused: {kind} {ARROW.join(path)} (no fallback is used until the "
                           "cycle is broken)")  # fmt: skip
            if to in self._triggers.get(key, {}):
                out.append(f"spec.triggers {to.partition('/')[2]} refused: {kind} {ARROW.join(path)}")
        return tuple(out)

    def _cycle_kind(self, path: list[str]) -> str:
        steps = list(pairwise(path))
        if all(self._fallback.get(a) == b for a, b in steps):
            return "fallback cycle"
        if all(b in self._triggers.get(a, {}) for a, b in steps):
            return "trigger cycle"
        return "cycle through fallback and triggers"


class FallbackPort(Protocol):
    """Where a stalled lane's events may go: the lane worker asks, the dispatcher (which knows every lane) answers."""

    def fallback_for(self, lane: Lane) -> str | None:
        """The webhook to hand ``lane``'s queue to now, or None (no fallback, not usable, nothing to move)."""
        ...

    def handed_over(self, lane: Lane, to: str, entries: list[QueuedEvent], activated: bool) -> None:
        """``entries`` are committed to ``to``'s queue: put them in its lane (and tell, when ``activated``)."""
        ...


def endpoint_host(endpoint: str) -> str:
    """The endpoint's host name only: never its scheme, credentials, port, path or query (which may carry a
    token, e.g. a Slack or Teams webhook URL)."""
    try:
        return urlsplit(endpoint).hostname or ""
    except ValueError:
        return ""


def trigger_event(target: WebhookTarget, kind: TriggerOn, retry: RetryState, *, state: WebhookState,
                  delivered: int, failed: int, pending: int, now: float) -> ChangeEvent:  # fmt: skip
    """The event a transition of ``target`` becomes: entityType ``webhook``, entityId its key, the entity its name,
    namespace, type, endpoint host, state, error (masked by the attempt pipeline, as in status) and counts."""
    namespace, _, name = target.key.partition("/")
    fqn = f"{namespace}.{name}"
    error = truncate(retry.last_reason, MAX_ERROR) if retry.last_reason and kind is not TriggerOn.RECOVERED else None
    entity: dict[str, object] = {
        "id": target.key, "name": name, "namespace": namespace, "fullyQualifiedName": fqn,
        "webhookType": target.spec.webhook_type.value,
        "endpointHost": endpoint_host(target.spec.webhook_config.endpoint),
        "status": state.value, "transition": kind.value,
        "counts": {"delivered": delivered, "failed": failed, "pending": pending},
    }  # fmt: skip
    if error is not None:
        entity["error"] = error
        entity["statusCode"] = retry.last_status_code
        entity["attempts"] = retry.attempts
    if retry.fallback is not None:
        entity["fallback"] = retry.fallback
    return ChangeEvent.model_validate({
        "id": str(uuid.uuid4()), "eventType": TRIGGER_EVENT_TYPES[kind], "entityType": WEBHOOK_ENTITY_TYPE,
        "entityId": target.key, "entityFullyQualifiedName": fqn, "timestamp": int(now * 1000), "entity": entity,
    })  # fmt: skip
