"""Fuzzing the operator's own OpenAPI document against the running operator (issue 13, item 11).

schemathesis reads the document the operator serves (``GET /api/v1/openapi.json``) and runs every phase it has
(examples, coverage, fuzzing, stateful where links exist) with *all* its checks: no 5xx, status codes, content
types, headers and bodies as documented, schema-valid requests accepted, schema-violating requests refused, auth not
ignored, unsupported methods answered 405. One check of our own: every 4xx answer is the JSON error shape and names
the problem. The operations endpoints aim at a real Webhook (with a loopback receiver) and a Kubernetes token
allowed to read and operate it, so they answer 200/202/409 as well as 4xx — not only 404.

Fixed seed, a bounded number of examples per operation and a request timeout keep the run deterministic and under
a few minutes on two cores; it runs in every ``make test``. All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, from_schema
from schemathesis.engine import events as st_events

from e2e.test_operations import sa_token
from support.cluster import Cluster, wait_for
from support.events import numbered
from support.operator import TOKEN, OperatorProcess, receiver, wait_status
from support.webhooks import manifest, single_spec
from webhook_operator.intake.openapi import OPENAPI_PATH
from webhook_operator.intake.operations import WEBHOOK_PATH

SEED = 42
MAX_EXAMPLES = 25
REQUEST_TIMEOUT = 10.0
WEBHOOK = "fuzzed"
#: What counts as refusing a schema-violating request: schemathesis' default list plus 413, which is how the intake
#: refuses a batch over maxItems (too many events in one post; documented).
REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
#: A format only this test knows: JSON text of an object or null (see ``generate_json_text``).
JSON_TEXT_FORMAT = "x-json-text"

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
schemathesis.openapi.format(
    JSON_TEXT_FORMAT, st.just("null") | st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=4).map(json.dumps)
)


def generate_json_text(node: Any) -> None:
    """Tell schemathesis what ``contentMediaType: application/json`` + ``contentSchema`` say.

    In JSON Schema 2020-12 (OpenAPI 3.1) the content keywords are annotations: validators and schemathesis'
    generator ignore them, so it would call any string matching the pattern valid, and a string ``entity`` that is
    not JSON would be a "schema-valid request refused". The document says it exactly as the standard allows; this
    adds, for the fuzzer only, a format whose values are such JSON texts. Strings that are not JSON still come
    from the negative phases, as violations of ``contentMediaType``.
    """
    if isinstance(node, dict):
        if node.get("contentMediaType") == "application/json" and node.get("contentSchema") == {
            "type": ["object", "null"]
        }:
            node["format"] = JSON_TEXT_FORMAT
        for value in node.values():
            generate_json_text(value)
    elif isinstance(node, list):
        for item in node:
            generate_json_text(item)


@schemathesis.check
def error_body_names_the_problem(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                                 case: schemathesis.Case) -> bool | None:  # fmt: skip
    """Every 4xx is ``{"error": "<what is wrong>", "status": <the status>}``: a caller can act on it."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = json.loads(response.content or b"")
    except ValueError:
        raise AssertionError(f"{response.status_code} answer is not JSON: {response.content[:200]!r}") from None
    if not isinstance(body, dict) or body.get("status") != response.status_code:
        raise AssertionError(f"{response.status_code} answer is not the error shape: {body!r}")
    message = body.get("error")
    if not isinstance(message, str) or len(message.strip()) < 8:
        raise AssertionError(f"{response.status_code} answer does not say what is wrong: {body!r}")
    return True


@dataclass
class Outcome:
    """What a run did: requests sent, statuses answered per operation, and every failed check or error."""

    requests: int = 0
    statuses: dict[str, set[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop_reason: str = ""


def _cut(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[: limit // 2] + " ... " + text[-limit // 2 :]


def describe(recorder: Any, case_id: str, check: str, info: Any) -> str:
    """One failed check: what, the request (as curl) and what the operator answered."""
    interaction = recorder.interactions.get(case_id)
    answer = ""
    if interaction is not None and interaction.response is not None:
        body = interaction.response.content.decode(errors="replace")
        answer = f"\n-> {interaction.response.status_code} {_cut(body)}"
    return f"{recorder.label}: {check}: {info.failure.title}: {info.failure.message}\n{_cut(info.code_sample)}{answer}"


def run_fuzzer(document: dict[str, Any], base_url: str, *, namespace: str, kube_token: str) -> Outcome:
    config = SchemathesisConfig.from_dict({
        "seed": SEED,
        "base-url": base_url,
        "workers": 1,
        "request-timeout": REQUEST_TIMEOUT,
        "generation": {"max-examples": MAX_EXAMPLES, "mode": "all"},
        "checks": {"enabled": True, "negative_data_rejection": {"expected-statuses": REJECTIONS}},
        "auth": {"openapi": {"bearerAuth": {"bearer": TOKEN}, "kubernetesToken": {"bearer": kube_token}}},
        "parameters": {"path.namespace": namespace, "path.name": WEBHOOK},
    })  # fmt: skip
    schema = schemathesis.openapi.from_dict(document, config=config)
    outcome = Outcome()
    for event in from_schema(schema).execute():
        if isinstance(event, st_events.ScenarioFinished):
            recorder = event.recorder
            for interaction in recorder.interactions.values():
                outcome.requests += 1
                if interaction.response is not None:
                    outcome.statuses.setdefault(recorder.label, set()).add(interaction.response.status_code)
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        outcome.failures.append(describe(recorder, case_id, check.name, check.failure_info))
        elif isinstance(event, st_events.NonFatalError):
            outcome.errors.append(f"{event.label}: {event.info.title}: {event.info.message}")
        elif isinstance(event, st_events.FatalError):
            outcome.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, st_events.EngineFinished):
            outcome.stop_reason = str(event.stop_reason)
    return outcome


def test_openapi_document_fuzzed_against_the_running_operator(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    kube_token = sa_token(cluster, namespace, "fuzzer", ["get", "patch"])
    with receiver() as recv:
        cluster.apply(manifest(WEBHOOK, single_spec(recv.url("fuzzed")), namespace))
        wait_status(cluster, namespace, WEBHOOK, lambda s: s.get("status") == "active")
        # Events routed to the Webhook, so a redelivery by time range has something to queue (202, not only 409).
        for number in range(3):
            assert operator.post(numbered(number, "9500"))[0] == 202
        wait_for(lambda: len(recv.events("fuzzed")) == 3, 30, "the routed events to be delivered")
        with urllib.request.urlopen(operator.url + OPENAPI_PATH, timeout=10) as resp:
            document = json.loads(resp.read())
        generate_json_text(document)
        outcome = run_fuzzer(document, operator.url, namespace=namespace, kube_token=kube_token)
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}/healthz", timeout=5) as resp:
            assert resp.status == 200, "the operator stopped answering its health probe"
    print(f"schemathesis: {outcome.requests} requests, stop: {outcome.stop_reason}, statuses: {outcome.statuses}")
    assert not outcome.errors, "\n".join(outcome.errors)
    assert not outcome.failures, f"{len(outcome.failures)} failure(s):\n" + "\n\n".join(outcome.failures[:20])
    assert outcome.stop_reason == "completed"
    for label, statuses in outcome.statuses.items():
        assert all(s < 500 for s in statuses), (label, statuses)
        if "/webhooks/" in label:  # the operations reached the real Webhook, not only a 404
            assert statuses & {200, 202, 409}, (label, statuses)
    assert 202 in outcome.statuses[f"POST {WEBHOOK_PATH}/redeliver"], "no redelivery was ever queued"
    assert outcome.requests > 500
