"""The Grafana dashboard parses and its PromQL names only the metrics the operator exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "charts" / "webhook-operator" / "dashboards" / "webhook-operator.json"

# The operator's Prometheus metrics (prometheus-client names) and the series a histogram adds.
METRICS = {
    "webhook_operator_deliveries_total": {"namespace", "webhook", "outcome"},
    "webhook_operator_delivery_attempt_seconds": {"outcome"},
    "webhook_operator_queue_depth": {"namespace", "webhook"},
    "webhook_operator_oldest_pending_age_seconds": {"namespace", "webhook"},
    "webhook_operator_retries_total": {"namespace", "webhook"},
    "webhook_operator_intake_events_total": {"result"},
    "webhook_operator_intake_requests_total": {"code"},
    "webhook_operator_status_patches_total": {"result"},
    "webhook_operator_store_bytes": set(),
    "webhook_operator_store_budget_bytes": set(),
    "webhook_operator_dead_letters": {"namespace", "webhook"},
}
HISTOGRAMS = {"webhook_operator_delivery_attempt_seconds"}
SERIES = {
    name + suffix: labels | ({"le"} if suffix == "_bucket" else set())
    for name, labels in METRICS.items()
    for suffix in (("_bucket", "_sum", "_count") if name in HISTOGRAMS else ("",))
}
LABEL_VALUES = {
    "outcome": {"delivered", "failed"},
    "result": {"accepted", "duplicate", "rejected", "ok", "error"},
}

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan",
}  # fmt: skip
FUNCTIONS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "clamp_min", "clamp_max", "abs",
    "time", "timestamp", "vector", "scalar", "label_replace", "label_join", "sort", "sort_desc", "max_over_time",
    "min_over_time", "avg_over_time", "absent", "absent_over_time", "changes", "resets", "round", "label_values",
}  # fmt: skip

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable.get("type") == "query":
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def metric_names(expr: str) -> set[str]:
    """Identifiers in metric-name position: what remains once strings, label matchers, ranges, groupings, template
    variables, functions, keywords and numbers are taken out."""
    text = _SELECTOR.sub(" ", _STRING.sub('""', expr))
    text = _GROUPING.sub(" ", _RANGE.sub(" ", _VARIABLE.sub(" ", text)))
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group()
        following = text[match.end() :].lstrip()
        if word in KEYWORDS or (following.startswith("(") and word in FUNCTIONS):
            continue
        names.add(word)
    return names


def _selectors(expr: str) -> Iterator[tuple[str, str]]:
    """(metric, matcher list) for every `metric{...}` selector."""
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^{}]*)\}", expr):
        yield match.group(1), match.group(2)


def test_dashboard_parses_and_has_panels() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "webhook-operator"
    assert len([p for p in _panels(dashboard["panels"]) if p["type"] != "row"]) >= 10
    ids = [p["id"] for p in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels(dashboard["panels"]):
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_metric_name_extraction() -> None:
    assert metric_names('sum by (le) (rate(foo_bucket{a="b",c=~"$x"}[$__rate_interval]))') == {"foo_bucket"}
    assert metric_names("sum(a) / sum(b) * 100") == {"a", "b"}
    assert metric_names('label_values(up{job="x"}, instance)') == {"up", "instance"}


@pytest.mark.parametrize("expr", _expressions(_dashboard()))
def test_every_expression_uses_only_the_operators_metrics(expr: str) -> None:
    names = metric_names(expr)
    if expr.startswith("label_values("):
        # label_values(metric{...}, label): the last argument is a label name, not a metric.
        label = expr.rstrip(")").rsplit(",", 1)[1].strip()
        names.discard(label)
    assert names, f"no metric in {expr!r}"
    unknown = names - SERIES.keys()
    assert not unknown, f"{expr!r} uses metrics the operator does not export: {sorted(unknown)}"
    for metric, matchers in _selectors(expr):
        for matcher in filter(None, (m.strip() for m in _split_matchers(matchers))):
            parsed = _MATCHER.fullmatch(matcher)
            assert parsed, f"cannot parse matcher {matcher!r} in {expr!r}"
            label, op, value = parsed.groups()
            assert label in SERIES[metric], f"{metric} has no label {label!r} ({expr!r})"
            if op == "=" and label in LABEL_VALUES:
                assert value in LABEL_VALUES[label], f"{label}={value!r} is not a value the operator sets"
    for grouping in _GROUPING.finditer(_STRING.sub('""', expr)):
        labels = {part.strip() for part in grouping.group(2).split(",") if part.strip()}
        allowed = set().union(*(SERIES[n] for n in names))
        assert labels <= allowed, f"grouping by {sorted(labels - allowed)} which no used metric has ({expr!r})"


def _split_matchers(text: str) -> list[str]:
    parts, depth_quote, current = [], False, ""
    for char in text:
        if char == '"' and not current.endswith("\\"):
            depth_quote = not depth_quote
        if char == "," and not depth_quote:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def test_every_metric_is_on_the_dashboard() -> None:
    used = set().union(*(metric_names(e) for e in _expressions(_dashboard())))
    for name in METRICS:
        variants = {name} | {name + s for s in ("_bucket", "_sum", "_count")}
        assert used & variants, f"{name} is on no panel"


def test_the_metric_table_matches_what_the_operator_registers() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from webhook_operator.metrics import Metrics

    registered: dict[str, tuple[str, set[str]]] = {}
    for attribute in vars(Metrics()).values():
        if isinstance(attribute, MetricWrapperBase):
            (family,) = attribute.describe()
            name = family.name + ("_total" if family.type == "counter" else "")
            registered[name] = (family.type, set(attribute._labelnames))
    assert {name: labels for name, (_type, labels) in registered.items()} == METRICS
    assert {name for name, (kind, _labels) in registered.items() if kind == "histogram"} == HISTOGRAMS
