"""Routing: which Webhooks receive a ChangeEvent. Pure (no I/O); see ``docs/filters.md`` for the semantics.

The dispatcher compiles each Webhook's eventFilters once (:meth:`CompiledFilters.compile`, which raises
:class:`FilterError` for the Webhook's status) and calls :meth:`CompiledFilters.matches` for every event.
"""

from __future__ import annotations

from webhook_operator.routing.filters import CompiledFilters, FilterError, matches
from webhook_operator.routing.qualifiers import QUALIFIER_KEYS, EventView, split_fqn, view_of

__all__ = ["QUALIFIER_KEYS", "CompiledFilters", "EventView", "FilterError", "matches", "split_fqn", "view_of"]
