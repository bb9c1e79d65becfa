"""How a ``RetryState`` is kept as JSON text, shared by every backend that stores it: one encoding, so a row read by
any version or backend means the same thing."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

from webhook_operator.store.base import RetryState

_RETRY_FIELDS = frozenset(f.name for f in fields(RetryState))


def retry_to_json(retry: RetryState) -> str:
    return json.dumps(asdict(retry))  # held_qids: tuple -> JSON list


def retry_from_json(text: str | None) -> RetryState:
    """Tolerates keys it does not know, so a row written by a newer version (another replica during a rolling
    upgrade, or a newer operator's file) still reads."""
    if text is None:
        return RetryState()
    data = {k: v for k, v in json.loads(text).items() if k in _RETRY_FIELDS}
    data["held_qids"] = tuple(int(q) for q in data.get("held_qids", ()))
    return RetryState(**data)
