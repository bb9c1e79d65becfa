"""The cyclic garbage collector, set for a long-running event loop with a large start-up heap.

Why: a full (generation 2) collection walks every tracked object. After start-up the operator holds a few hundred
thousand of them that never die — modules, kopf's and the Kubernetes client's registries, pydantic's schemas, one
target per Webhook — and with CPython's default thresholds (700, 10, 10) the delivery path's young garbage (futures,
tasks, request objects) triggered a full walk every few seconds: ~100-150 ms each on this machine, 5-8 % of the
operator's CPU per event under the peer-shape benchmark (docs/performance.md, "The collector"). ``gc.freeze()``
moves everything alive at that moment into a permanent generation that collections skip, and a larger first
threshold lets most per-event garbage die by reference count before it is ever promoted.

Nothing is lost by it: objects frozen here are the ones that live for the process anyway; a frozen object that later
becomes part of a garbage cycle is never collected, and neither is anything it still references then. Reference
counting still frees everything that is not in a cycle: a Webhook registered before the freeze and deleted later
is freed whole (its worker, lane and queue hold no cycle: ``test_a_webhook_registered_before_settle_is_freed_...``).
What can stay is what was in flight at the freeze and dies in a cycle: e.g. a lean-client ``Connection`` (it and
its llhttp parser point at each other) open at that moment, with its transport and at most ``keep`` body bytes;
bounded by the connections open then, once.
"""

from __future__ import annotations

import gc

#: Allocations minus deallocations of tracked objects before a young collection (CPython's default is 700).
YOUNG_THRESHOLD = 20_000
#: Young collections per middle one, middle ones per full one (CPython's defaults).
OLDER_THRESHOLDS = (10, 10)


def settle() -> int:
    """Collect once, freeze what survives start-up, raise the young threshold; returns the objects frozen.

    Called when the operator has registered every existing Webhook (its long-lived state is built). Calling it
    again later freezes what has become long-lived since; it is cheap to repeat but never needed per event."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    return gc.get_freeze_count()
