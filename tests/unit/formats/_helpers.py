"""Shared test material for the formats: contexts, batches of real-shaped sample events, synthetic extremes."""

from __future__ import annotations

import json
from itertools import cycle, islice
from typing import Any

from support.events import all_events, event, raw
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookType
from webhook_operator.formats.base import RenderContext

UI = "https://om.example.com"
FCT = "bigquery_analytics.acme_prod.finance_mart.fct_invoices"
#: The samples the brief singles out: description, owners, tags, tier, test result, unicode, 400 columns, entity text.
HIGHLIGHTS = (6, 7, 8, 10, 19, 23, 25, 33)


def ctx(kind: WebhookType, **overrides: Any) -> RenderContext:
    values: dict[str, Any] = {"webhook_name": "finance-alerts", "webhook_type": kind, "ui_base_url": UI}
    values.update(overrides)
    return RenderContext(**values)


def everyone(kind: WebhookType, **overrides: Any) -> RenderContext:
    """A context with every sendTo* flag and two admins (one listed twice: must be deduplicated)."""
    flags = {"send_to_admins": True, "send_to_owners": True, "send_to_followers": True}
    return ctx(kind, admins=("admin", "dpo", "admin"), **flags, **overrides)


def batch(size: int) -> list[ChangeEvent]:
    """``size`` events cycling through all 40 samples (so 100 holds the 400-column table 2-3 times)."""
    return list(islice(cycle(all_events()), size))


def wide_batch(size: int) -> list[ChangeEvent]:
    """Only the 144 KB, 400-column table: the worst case for size limits."""
    return [event(25)] * size


def extreme_event() -> ChangeEvent:
    """Synthetic worst case: a 2,000-character FQN full of markup characters, a huge user name, 60 changed fields
    with 20 KB values."""
    data = raw(6)
    fqn = "svc.db.schema." + '<&>_*|[x]"' * 200
    data["entityFullyQualifiedName"] = fqn
    data["userName"] = "u&<>" * 500
    big = "x<&>" * 5000
    data["changeDescription"]["fieldsUpdated"] = [
        {"name": f"columns.c{i}.description", "oldValue": big, "newValue": big + "!"} for i in range(60)
    ]
    return ChangeEvent.model_validate(data)


def entity_of(number: int) -> dict[str, Any]:
    """The sample's entity as an object, whether the file holds it as an object or as JSON text."""
    entity = raw(number)["entity"]
    parsed: dict[str, Any] = json.loads(entity) if isinstance(entity, str) else entity
    return parsed
