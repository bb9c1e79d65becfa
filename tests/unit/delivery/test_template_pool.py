"""Issue 13, finding 1: a Custom template cannot stall or kill the operator. Templates render in worker processes
with a wall-clock timeout, an address-space limit, a CPU limit and an output cap; each exceeded limit is a permanent
failure of that batch whose message names the limit, while the event loop keeps answering and the operator's own
memory does not grow.

Driven through the attempt pipeline of a real graph (``build_graph``), the one path deliveries and the test
operation take, with a sender that never touches a socket."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from support.events import event
from webhook_operator.api.webhook import WebhookSpec
from webhook_operator.delivery.attempt import Attempt
from webhook_operator.delivery.sender import OutcomeKind
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.delivery.template_pool import TemplateLimits, TemplatePool
from webhook_operator.formats.base import FormatError
from webhook_operator.graph import Graph, build_graph
from webhook_operator.reconcile import Resource
from webhook_operator.store.memory import MemoryStore

from .fakes import ScriptedSender

NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}done"
#: Strings and lists the sandbox's own size checks allow, made huge by doubling and by shared references: only the
#: worker's address-space limit stops these.
MEMORY_HOGS = {
    "doubling": "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(11) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "shared references": "{{ (['x' * 1000000] * 1000)|tojson|length }}",
}


def custom(template: str, key: str = "ns/custom") -> WebhookTarget:
    spec = WebhookSpec.model_validate({
        "webhookType": "Custom",
        "eventFilters": [{"eventType": "entityCreated", "entities": ["table"]}],
        "webhookConfig": {"endpoint": "http://receiver.test/hook", "payloadTemplate": template},
    })  # fmt: skip
    return WebhookTarget(key=key, spec=spec)


@pytest.fixture
async def graph() -> AsyncIterator[Graph]:
    built = build_graph(store=MemoryStore(), sender=ScriptedSender())
    await built.open()
    yield built
    await built.close()


async def attempt(graph: Graph, template: str) -> Attempt:
    return await graph.pipeline.run(custom(template), [event(10)], delivery="d-1", attempt=lambda: 1)


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.timeout(60)
async def test_nested_loops_hit_the_time_limit_while_the_event_loop_keeps_answering(graph: Graph) -> None:
    delays: list[float] = []

    async def tick() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.05)
            delays.append(time.monotonic() - before - 0.05)

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    try:
        result = await attempt(graph, NESTED_LOOPS)
    finally:
        ticker.cancel()
    assert result.outcome.kind is OutcomeKind.PERMANENT
    assert result.outcome.error == "payload could not be rendered: payloadTemplate: exceeded the time limit (2 s)"
    assert result.record.error == result.outcome.error
    assert time.monotonic() - started < 10
    assert delays and max(delays) < 1.0, f"the event loop stalled for {max(delays):.2f} s"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("template", MEMORY_HOGS.values(), ids=MEMORY_HOGS.keys())
async def test_memory_hogs_hit_the_memory_limit_and_the_operator_does_not_grow(template: str) -> None:
    graph = build_graph(store=MemoryStore(), sender=ScriptedSender(), templates=TemplateLimits(timeout=30))
    before = peak_rss_kib()
    try:
        result = await attempt(graph, template)
    finally:
        await graph.close()
    assert result.outcome.kind is OutcomeKind.PERMANENT
    assert result.outcome.error is not None
    assert "exceeded the memory limit (256 MiB)" in result.outcome.error
    assert peak_rss_kib() - before < 100 * 1024, "the template's memory was allocated in the operator's process"


@pytest.mark.timeout(60)
async def test_output_cap_is_enforced_while_rendering(graph: Graph) -> None:
    result = await attempt(graph, "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}")
    assert result.outcome.error == (
        "payload could not be rendered: payloadTemplate: exceeded the output size limit: output is larger than "
        "5000000 characters"
    )


@pytest.mark.timeout(60)
async def test_sandbox_size_checks_apply_in_the_worker(graph: Graph) -> None:
    result = await attempt(graph, '{{ "x"|center(1000000000)|length }}')
    assert result.outcome.error is not None
    assert "payloadTemplate line 1: exceeded the output size limit" in result.outcome.error


async def test_a_template_renders_through_the_pool_exactly_as_in_process(graph: Graph) -> None:
    template = '{"id": {{ event.eventId | tojson }}, "n": {{ events | length }}, "who": {{ webhook_name | tojson }}}'
    result = await attempt(graph, template)
    assert result.outcome.ok
    (request,) = graph.sender.requests  # type: ignore[attr-defined]
    assert request.body == f'{{"id": "{event(10).id}", "n": 1, "who": "custom"}}'.encode()
    assert request.headers["Content-Type"] == "application/json"
    assert graph.templates.pids(), "the template was not rendered in a worker process"
    broken = await attempt(graph, "ok\n{{ nope }}")
    assert broken.outcome.error == "payload could not be rendered: payloadTemplate line 2: 'nope' is undefined"


async def limited_pool(**limits: Any) -> TemplatePool:
    return TemplatePool(TemplateLimits(**limits))


@pytest.mark.timeout(60)
async def test_a_timed_out_worker_is_killed_and_replaced() -> None:
    pool = await limited_pool(workers=1, timeout=0.5)
    try:
        with pytest.raises(FormatError, match=r"^payloadTemplate: exceeded the time limit \(0\.5 s\)$"):
            await pool.render(NESTED_LOOPS, {}, tenant="ns")
        assert pool.pids() == []
        assert (await pool.render("{{ 1 + 1 }}", {}, tenant="ns")).body == b"2"
        (pid,) = pool.pids()
        assert (await pool.render("{{ 2 + 2 }}", {}, tenant="ns")).body == b"4"
        assert pool.pids() == [pid], "a healthy worker is reused"
    finally:
        await pool.close()


@pytest.mark.timeout(60)
async def test_a_worker_that_dies_mid_render_is_reported_as_the_memory_limit() -> None:
    pool = await limited_pool(workers=1, timeout=20, memory_bytes=128 * 1024 * 1024)
    try:
        rendering = asyncio.create_task(pool.render(NESTED_LOOPS, {}, tenant="ns"))
        deadline = time.monotonic() + 30
        while not pool.pids() and time.monotonic() < deadline:  # noqa: ASYNC110 - polling another process
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        os.kill(pool.pids()[0], signal.SIGKILL)  # what the kernel's OOM killer does
        with pytest.raises(FormatError, match=r"^payloadTemplate: exceeded the memory limit \(128 MiB\)"):
            await rendering
        assert (await pool.render("{{ 'still' }} {{ 'works' }}", {}, tenant="ns")).body == b"still works"
    finally:
        await pool.close()


@pytest.mark.timeout(60)
async def test_compile_checks_run_in_the_pool_and_are_bounded() -> None:
    pool = await limited_pool(workers=1, timeout=5)
    try:
        await pool.check("{{ event.eventId }}", tenant="ns")
        with pytest.raises(FormatError, match=r"^payloadTemplate line 1: unexpected '}'"):
            await pool.check("{{ } }}", tenant="ns")
        with pytest.raises(FormatError, match=r"^payloadTemplate: the template is nested too deeply"):
            await pool.check("{{ " + "(" * 20_000 + "1" + ")" * 20_000 + " }}", tenant="ns")
    finally:
        await pool.close()


@pytest.mark.timeout(60)
async def test_close_stops_every_worker() -> None:
    pool = await limited_pool(workers=2)
    await asyncio.gather(pool.render("{{ 1 }}", {}, tenant="ns-1"), pool.render("{{ 2 }}", {}, tenant="ns-2"))
    pids = pool.pids()
    assert len(pids) == 2
    await pool.close()
    assert pool.pids() == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(FormatError, match="closed"):
        await pool.render("{{ 1 }}", {}, tenant="ns")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ " + "(" * 20_000 + "1" + ")" * 20_000 + " }}", "payloadTemplate: the template is nested too deeply"),
        ("{{ event.eventId } }}", "payloadTemplate line 1: unexpected '}'"),
    ],
    ids=["20000-parentheses", "syntax-error"],
)
async def test_the_reconciler_reports_a_template_that_cannot_compile_in_status(
    graph: Graph, template: str, message: str
) -> None:
    """Finding 9: 20,000 nested parentheses raised a bare RecursionError, so the Webhook was never registered and
    its status showed nothing. Now it is registered with a configuration error naming the problem."""
    spec = {
        "webhookType": "Custom",
        "eventFilters": [{"eventType": "entityCreated", "entities": ["table"]}],
        "webhookConfig": {"endpoint": "http://receiver.test/hook", "payloadTemplate": template},
    }
    target = await graph.reconciler.apply(Resource(namespace="ns", name="deep", uid="u1", generation=1, spec=spec))
    assert target is not None and target.config_error is not None
    assert target.config_error.startswith(message), target.config_error
    registered = graph.dispatcher.keys()
    assert "ns/deep" in registered


@pytest.mark.timeout(60)
async def test_the_cpu_limit_stops_a_render_the_wall_clock_did_not() -> None:
    pool = await limited_pool(workers=1, timeout=30, cpu=1)
    try:
        with pytest.raises(FormatError, match=r"^payloadTemplate: exceeded the CPU time limit \(1 s\)$"):
            await pool.render(NESTED_LOOPS, {}, tenant="ns")
        assert (await pool.render("{{ 'next' }}", {}, tenant="ns")).body == b"next"
    finally:
        await pool.close()


@pytest.mark.timeout(60)
async def test_values_orjson_refuses_still_reach_the_template() -> None:
    pool = await limited_pool(workers=1)
    try:
        rendered = await pool.render("{{ big + 1 }} {{ text|length }}", {"big": 2**70, "text": "a\ud800b"}, tenant="ns")
        assert rendered.body == f"{2**70 + 1} 3".encode()
    finally:
        await pool.close()


@pytest.mark.timeout(60)
async def test_one_namespace_cannot_make_another_wait_behind_its_renders() -> None:
    """Adversarial review of issue 13: the pool served renders first come, first served, so one namespace's eight
    hostile renders (each stopped by the 2 s limit) made another namespace's harmless render — and its compile check
    at reconcile, which waits holding the Webhook's lock — wait ~8 s. Now a namespace has at most one render or
    check in a worker at a time (the rest queue behind it, in its own queue), so with the default two workers another
    namespace is served by the other one at once."""
    pool = TemplatePool(TemplateLimits())  # the defaults: 2 workers, 2 s
    hostile: list[asyncio.Task[Any]] = []
    try:
        await pool.render("{{ 1 }}", {}, tenant="team-b")  # a warm worker, as in a running operator
        hostile = [asyncio.create_task(pool.render(NESTED_LOOPS, {}, tenant="team-a")) for _ in range(8)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        rendered, _ = await asyncio.gather(
            pool.render('{"n": {{ events|length }}}', {"events": [1]}, tenant="team-b"),
            pool.check("{{ event.eventId }}", tenant="team-c"),
        )
        waited = time.monotonic() - started
        assert rendered.body == b'{"n": 1}'
        assert waited < 1.5, f"another namespace's render waited {waited:.2f} s behind team-a's renders"
        assert pool.waiting() == {"team-a": 8}, "team-a's renders wait in their own turn"
    finally:
        for task in hostile:
            task.cancel()
        await asyncio.gather(*hostile, return_exceptions=True)
        await pool.close()
    assert pool.waiting() == {}, "the per-namespace queues are dropped when idle"
