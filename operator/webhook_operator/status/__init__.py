"""Webhook status and Events on the Kubernetes API: the engine's snapshots in, ``status`` patches and Events out.

Layering: imports ``api`` and the official ``kubernetes`` client only — never delivery, intake, handlers, cli or
kopf — and is, besides the kopf handlers, the only code that talks to the Kubernetes API. Every blocking client call
runs in a worker thread.

* ``summary`` (pure): snapshot + generation + operator conditions + previous status → the status dict.
* ``schedule`` (pure): per-webhook debounce/coalescing, global rate cap, backoff.
* ``events``: which transitions deserve an Event (pure) and a rate-limited ``EventRecorder``.
* ``entry`` (pure): what is known about one webhook and the status patch built from it.
* ``writer``: ``StatusWriter``, the engine's ``StateObserver``: a facade over the four parts below.
* ``ledger`` (no I/O): every webhook's entry and when its status is due (with ``schedule``).
* ``pump``: the background task: which due writes start now, within the rate cap and the pool.
* ``patcher``: one patch call in the writer's thread pool, classified, counted and logged.
* ``event_queue``: Events asked for by the synchronous callbacks, posted by the background task.
* ``kube``: the client calls and how their errors are classified.
"""

from webhook_operator.status.events import EventRecorder, ObjectRef, transition_events
from webhook_operator.status.summary import OperatorConditions, summarize
from webhook_operator.status.writer import StatusWriter

__all__ = ["EventRecorder", "ObjectRef", "OperatorConditions", "StatusWriter", "summarize", "transition_events"]
