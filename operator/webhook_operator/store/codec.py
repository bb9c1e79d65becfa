"""What every SQL backend encodes the same way: a ``RetryState`` as JSON text (so a row read by any version or backend
means the same thing), and the filters of a delivery-log query (so the backends cannot disagree on what a query
selects; only the placeholder syntax differs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, fields

from webhook_operator.store.base import AttemptQuery, KeyHold, RetryState

_RETRY_FIELDS = frozenset(f.name for f in fields(RetryState))
_HOLD_FIELDS = frozenset(f.name for f in fields(KeyHold))


def retry_to_json(retry: RetryState) -> str:
    data = asdict(retry)  # held_qids: tuple -> JSON list; holds: tuple of dataclasses -> list of objects
    if not retry.holds:
        del data["holds"]  # ordering webhook (the default): the row stays exactly what older versions wrote
    return json.dumps(data)


def _hold(data: dict[str, object]) -> KeyHold:
    fields_ = {k: v for k, v in data.items() if k in _HOLD_FIELDS}
    fields_["qids"] = tuple(int(q) for q in fields_.get("qids", ()))  # type: ignore[attr-defined]
    return KeyHold(**fields_)  # type: ignore[arg-type]


def retry_from_json(text: str | None) -> RetryState:
    """Tolerates keys it does not know, so a row written by a newer version (another replica during a rolling
    upgrade, or a newer operator's file) still reads; a row without ``holds`` (older versions, ordering webhook)
    reads as none."""
    if text is None:
        return RetryState()
    data = {k: v for k, v in json.loads(text).items() if k in _RETRY_FIELDS}
    data["held_qids"] = tuple(int(q) for q in data.get("held_qids", ()))
    data["holds"] = tuple(_hold(h) for h in data.get("holds", ()))
    return RetryState(**data)


def attempt_filters(webhook: str, query: AttemptQuery,
                    placeholder: Callable[[int], str]) -> tuple[list[str], list[object]]:  # fmt: skip
    """WHERE clauses and parameters of ``attempts(webhook, query)``; ``placeholder(n)`` writes the n-th parameter
    (1-based: ``?`` for SQLite, ``$n`` for PostgreSQL). The LIMIT is the caller's."""
    clauses: list[str] = [f"webhook = {placeholder(1)}"]
    params: list[object] = [webhook]
    for column, value in (
        ("outcome =", query.outcome.value if query.outcome else None),
        ("started_at >=", query.since),
        ("started_at <", query.until),
        ("id >", query.after_id),
    ):
        if value is not None:
            params.append(value)
            clauses.append(f"{column} {placeholder(len(params))}")
    return clauses, params
