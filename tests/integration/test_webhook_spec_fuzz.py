"""Random Webhook specs: the API server rejects them naming a field, or the operator reconciles them (issue 13,
item 11).

Anyone who may write a Webhook is a tenant of the operator, so whatever the CRD lets through must reach the
reconcile path without an exception — a configuration error in status is fine, a crash is not. The specs come from a
strategy that walks the CRD's own schema (so fields other changes add are fuzzed too): mostly valid values, with
wrong types, out-of-range numbers, unknown enum values, unknown fields and missing required fields mixed in. Each
one goes to the real API server (``kubectl apply --dry-run=server --validate=strict``: validation, CEL rules and
defaulting, nothing stored). A refusal must name the field; an accepted object (as the API server would store it,
defaults applied) goes through the operator's ``Reconciler`` on a real delivery graph (in-memory store, nothing
sent), which must register a target — the operator's model must accept what its CRD accepts.

Bounded and reproducible: 40 examples, ``derandomize=True`` (a fixed seed derived from the test), no example
database.
"""

from __future__ import annotations

import asyncio
import json
import re
import string
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from support.cluster import Cluster
from support.webhooks import CRD_FILE, manifest
from webhook_operator.delivery.sender import Outcome, Request
from webhook_operator.graph import Graph, build_graph
from webhook_operator.reconcile import Resource
from webhook_operator.store.memory import MemoryStore

NAME = "fuzzed-spec"
MAX_EXAMPLES = 40
#: A field named the way the API server names fields in its errors: spec.webhookConfig.timeout, spec.tags[0].x.
FIELD = re.compile(r"spec(\.[A-Za-z]|\[|: )")
_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=6), inner, max_size=2),
    max_leaves=4,
)
#: A template the API server accepts that once escaped the reconciler as a RecursionError (issue 13, finding 9).
DEEP_TEMPLATE = "{{ " + "(" * 20000 + "1" + ")" * 20000 + " }}"
#: Values for fields whose strings mean something: (valid ones, invalid ones).
_MEANINGFUL: dict[str, tuple[list[str], list[str]]] = {
    "endpoint": (
        ["https://127.0.0.1:9/hook", "http://localhost:9/x?a=1", "http://[::1]:9/"],
        ["not a url", "ftp://127.0.0.1/x", "https://", "/relative"],
    ),
    "payloadTemplate": (
        [
            "{{ events | length }}",
            '{"n": {{ events | length }}}',
            "{{ (((((1))))) }}",
            "{{ events[0].entity.name | upper }}",
            # Valid for the API server, configuration errors for the operator.
            "{% for %}",
            "{{ x.__class__.__mro__ }}",
            "",
            DEEP_TEMPLATE,
        ],
        [],
    ),
    "maxQueuedAge": (["90s", "15m", "2h", "7d"], ["0s", "1y", "", "9999999999d"]),
    "name": (["hmac", "X-Token", "creds"], ["Bad Header", "a" * 300, ""]),
    "key": (["secret", "token"], ["", "k" * 300]),
    "tagFQN": (["PII.Sensitive", "Tier.Tier1"], [""]),
}
#: How often a value is drawn invalid (per field, so a spec of a dozen fields is refused about half the time).
_INVALID_PERCENT = 3


def _crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def _wrong_type(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = node.get("type")
    others = {
        "string": st.integers() | st.booleans() | st.lists(st.text(max_size=3), max_size=2),
        "integer": st.text(max_size=4) | st.floats(allow_nan=False, allow_infinity=False) | st.booleans(),
        "boolean": st.sampled_from(["yes", "true", 1, 0]),
        "array": st.text(max_size=4) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
        "object": st.text(max_size=4) | st.lists(st.integers(), max_size=2),
    }
    return others.get(str(kind), _ANY_JSON)


def _value(node: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """A value for a schema node: usually valid, sometimes of the wrong type, out of range or meaningless."""
    return _chance(_INVALID_PERCENT).flatmap(lambda bad: _invalid(node, name) if bad else _valid(node, name))


def _chance(percent: int) -> st.SearchStrategy[bool]:
    # Hypothesis favours small integers (0 is the simplest), so "rare" is at the top of the range.
    return st.integers(0, 99).map(lambda n: n >= 100 - percent)


def _invalid(node: dict[str, Any], name: str) -> st.SearchStrategy[Any]:
    kind = node.get("type")
    options = [_wrong_type(node)]
    if kind == "string" and _MEANINGFUL.get(name, ([], []))[1]:
        options.append(st.sampled_from(_MEANINGFUL[name][1]))
    if "enum" in node:
        options.append(st.sampled_from(["Discord", "", "generic", "entityExploded"]))
    if kind == "integer":
        low, high = node.get("minimum", 0), node.get("maximum", 2**31)
        options.append(st.sampled_from([low - 1, high + 1, -(2**63), 2**70]))
    if kind == "string" and "maxLength" in node:
        options.append(st.just("x" * (node["maxLength"] + 1)))
    return st.one_of(options)


def _valid(node: dict[str, Any], name: str) -> st.SearchStrategy[Any]:
    kind = node.get("type")
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if kind == "object" and "properties" in node:
        return _object(node)
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):  # headers: name -> value
        header = st.text(string.ascii_letters + "-", min_size=1, max_size=12) | st.sampled_from(["Bad Header", ":x"])
        return st.dictionaries(header, st.text(max_size=12), max_size=3)
    if kind == "object":
        return st.dictionaries(st.text(max_size=6), _ANY_JSON, max_size=2)
    if kind == "array":
        low, high = node.get("minItems", 0), min(node.get("maxItems", 3), 3)
        return st.lists(_value(node.get("items", {})), min_size=low, max_size=max(low, high))
    if kind == "integer":
        return st.integers(node.get("minimum", -(2**31)), node.get("maximum", 2**31))
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        if name in _MEANINGFUL:
            return st.sampled_from(_MEANINGFUL[name][0])
        if "pattern" in node:
            return st.from_regex(node["pattern"], fullmatch=True).filter(lambda v: len(v) <= 64)
        return st.text(min_size=node.get("minLength", 0), max_size=min(node.get("maxLength", 16), 16))
    return _ANY_JSON


@st.composite
def _object(draw: st.DrawFn, node: dict[str, Any]) -> dict[str, Any]:
    required = set(node.get("required", []))
    out: dict[str, Any] = {}
    for key, child in node["properties"].items():
        wanted = not draw(_chance(_INVALID_PERCENT)) if key in required else draw(_chance(25))
        if wanted:
            out[key] = draw(_value(child, key))
    if draw(_chance(1)):
        out["colour"] = "blue"  # a field the CRD does not have
    return out


SPECS = _object(_crd_spec_schema())


class NoSender:
    """The graph may register targets but must never send: nothing is submitted."""

    async def send(self, request: Request) -> Outcome:
        raise AssertionError(f"unexpected delivery to {request.url}")

    async def close(self) -> None:
        return None


@pytest.fixture
def engine() -> Iterator[tuple[asyncio.AbstractEventLoop, Graph]]:
    """One delivery graph for all examples (a re-applied spec replaces the target, as an update does)."""
    loop = asyncio.new_event_loop()
    graph = build_graph(store=MemoryStore(), sender=NoSender())
    loop.run_until_complete(graph.open())
    yield loop, graph
    loop.run_until_complete(graph.close())
    loop.close()


def test_random_specs_are_refused_naming_a_field_or_reconciled(
    cluster: Cluster, webhook_crd: None, namespace: str, engine: tuple[asyncio.AbstractEventLoop, Graph]
) -> None:
    loop, graph = engine
    tally: Counter[str] = Counter()

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(spec=SPECS)
    @example(
        spec={
            "webhookType": "Custom",
            "eventFilters": [{"eventType": "entityCreated"}],
            "webhookConfig": {"endpoint": "https://127.0.0.1:9/hook", "payloadTemplate": DEEP_TEMPLATE},
        }
    )
    def refused_naming_a_field_or_reconciled(spec: dict[str, Any]) -> None:
        result = cluster.apply(manifest(NAME, spec, namespace), "--dry-run=server", "--validate=strict", "-o", "json",
                               check=False)  # fmt: skip
        if result.returncode != 0:
            assert FIELD.search(result.stderr), f"refused without naming a field:\n{result.stderr}\nspec: {spec}"
            tally["refused"] += 1
            return
        stored = json.loads(result.stdout)
        resource = Resource(namespace=namespace, name=NAME, uid="fuzz", generation=1, spec=stored["spec"])
        target = loop.run_until_complete(graph.reconciler.apply(resource))  # a bug raises: the test fails
        assert target is not None, f"the API server accepted a spec the operator cannot parse: {stored['spec']}"
        tally["reconciled"] += 1
        tally["configuration errors"] += target.config_error is not None

    refused_naming_a_field_or_reconciled()
    print(dict(tally))
    # Both sides were exercised (the strategy is neither all-valid nor all-broken).
    assert tally["refused"] >= MAX_EXAMPLES // 8 and tally["reconciled"] >= MAX_EXAMPLES // 8, tally
