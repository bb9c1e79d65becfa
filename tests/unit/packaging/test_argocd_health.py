"""The Argo CD health check for Webhooks, run by a real Lua 5.1 interpreter (Argo CD's gopher-lua speaks 5.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

try:
    from lupa import lua51
except ImportError:  # pragma: no cover - the message is the point
    pytest.fail(
        "lupa (a real Lua interpreter) is not installed: install the dev extras (.venv/bin/pip install lupa)",
        pytrace=False,
    )

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "charts" / "webhook-operator" / "health" / "argocd-webhook-health.lua"
GITOPS_DOC = ROOT / "docs" / "gitops.md"


def _to_lua(runtime: Any, value: Any) -> Any:
    """Python JSON-like data as Lua values, the way Argo CD hands `obj` to the script (lists are 1-based arrays)."""
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def assess(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _to_lua(runtime, obj)
    # Argo CD runs the script body as a chunk; `return hs` ends it.
    result = runtime.execute(SCRIPT.read_text())
    return str(result["status"]), str(result["message"])


def webhook(
    *,
    generation: int = 1,
    enabled: bool | None = None,
    state: str | None = "active",
    observed: int | None = 1,
    ready: str | None = "True",
    ready_generation: int | None = 1,
    reason: str = "Delivering",
    message: str = "last delivery succeeded",
    with_status: bool = True,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"webhookType": "Generic", "webhookConfig": {"endpoint": "https://example.com/hook"}}
    if enabled is not None:
        spec["enabled"] = enabled
    obj: dict[str, Any] = {
        "apiVersion": "events.open-metadata.org/v1alpha1",
        "kind": "Webhook",
        "metadata": {"name": "hook", "namespace": "team-a", "generation": generation},
        "spec": spec,
    }
    if not with_status:
        return obj
    status: dict[str, Any] = {}
    if state is not None:
        status["status"] = state
    if observed is not None:
        status["observedGeneration"] = observed
    if ready is not None:
        condition: dict[str, Any] = {"type": "Ready", "status": ready, "reason": reason, "message": message}
        if ready_generation is not None:
            condition["observedGeneration"] = ready_generation
        status["conditions"] = [{"type": "Reconciling", "status": "False", "reason": "", "message": ""}, condition]
    obj["status"] = status
    return obj


def test_the_interpreter_is_lua_5_1() -> None:
    assert lua51.LuaRuntime().eval("_VERSION") == "Lua 5.1"


def test_active_and_ready_for_the_current_generation_is_healthy() -> None:
    assert assess(webhook()) == ("Healthy", "last delivery succeeded")
    assert assess(webhook(generation=4, observed=4, ready_generation=4)) == ("Healthy", "last delivery succeeded")


def test_ready_without_a_message_falls_back_to_the_reason() -> None:
    assert assess(webhook(message="")) == ("Healthy", "Delivering")


def test_ready_condition_without_observed_generation_counts_as_current() -> None:
    assert assess(webhook(ready_generation=None))[0] == "Healthy"


@pytest.mark.parametrize(
    ("state", "message", "expected"),
    [
        ("failed", "connection refused", "failed: connection refused"),
        ("retryLimitReached", "HTTP 503 after 7 attempts", "retryLimitReached: HTTP 503 after 7 attempts"),
    ],
)
def test_failed_and_retry_limit_reached_are_degraded_with_the_ready_message(
    state: str, message: str, expected: str
) -> None:
    assert assess(webhook(state=state, ready="False", reason="DeliveryFailed", message=message)) == (
        "Degraded",
        expected,
    )


def test_degraded_without_a_ready_condition_still_says_why() -> None:
    assert assess(webhook(state="retryLimitReached", ready=None)) == (
        "Degraded",
        "retryLimitReached: retries exhausted",
    )
    assert assess(webhook(state="failed", ready=None)) == ("Degraded", "failed: delivery failed")


def test_awaiting_retry_is_progressing_because_it_heals_by_itself() -> None:
    obj = webhook(state="awaitingRetry", ready="False", reason="AwaitingRetry", message="HTTP 502; next attempt in 5m")
    assert assess(obj) == ("Progressing", "retrying: HTTP 502; next attempt in 5m")


@pytest.mark.parametrize(
    "obj",
    [
        webhook(enabled=False, state="disabled", ready="False", reason="Disabled", message="disabled"),
        webhook(enabled=False, with_status=False),  # disabled before the operator has even seen it
        webhook(enabled=False, generation=2, observed=1, state="active"),  # just switched off
        webhook(state="disabled", ready="True"),  # status says so even if spec.enabled is absent
    ],
    ids=["disabled", "no-status", "not-yet-observed", "status-only"],
)
def test_disabled_is_suspended(obj: dict[str, Any]) -> None:
    assert assess(obj) == ("Suspended", "Webhook is disabled (spec.enabled: false)")


def test_explicitly_enabled_is_not_suspended() -> None:
    assert assess(webhook(enabled=True))[0] == "Healthy"


def test_no_status_is_progressing() -> None:
    assert assess(webhook(with_status=False)) == ("Progressing", "Waiting for webhook-operator to report status")
    no_generation = webhook(observed=None)
    assert assess(no_generation) == ("Progressing", "Waiting for webhook-operator to report status")


def test_an_unobserved_generation_is_progressing_even_if_the_old_state_was_bad() -> None:
    for state in ("active", "failed", "retryLimitReached"):
        obj = webhook(generation=3, observed=2, state=state, ready_generation=2)
        assert assess(obj) == ("Progressing", "Waiting for webhook-operator to observe generation 3 (observed 2)")


def test_a_stale_ready_condition_is_progressing() -> None:
    obj = webhook(generation=3, observed=3, ready_generation=2)
    assert assess(obj) == ("Progressing", "Ready condition is for generation 2, waiting for generation 3")


def test_active_but_not_ready_is_progressing_with_the_ready_message() -> None:
    obj = webhook(ready="Unknown", reason="Starting", message="opening the store")
    assert assess(obj) == ("Progressing", "opening the store")
    assert assess(webhook(ready=None)) == ("Progressing", "Waiting for the Ready condition")


def test_gitops_doc_embeds_the_same_script() -> None:
    doc = GITOPS_DOC.read_text()
    script = SCRIPT.read_text()
    indented = "\n".join(("      " + line) if line else "" for line in script.rstrip("\n").splitlines())
    assert indented in doc, "docs/gitops.md must embed charts/webhook-operator/health/argocd-webhook-health.lua"
