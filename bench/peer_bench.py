"""The peer shape and the slow receiver, for bench/operator_bench.py (``--scenario peer`` / ``slow``).

Peer shape: one event per POST (what OpenMetadata sends, and what the Flux comparison in docs/performance.md used)
from 1, 16 or 64 concurrent clients, to a Generic webhook with batchSize 1, ``spec.delivery.ordering: webhook`` or
``entity`` (every event its own entity, so ``entity`` may use all of ``maxInFlight``). Each run is measured twice
in a row with the same events: through the operator, and through bench/relay.py (a bare aiohttp relay: parse,
answer 202, forward; no persistence), the same-run ceiling. Both are measured alike: delivered/s (first POST to
last arrival at the receiver), p50/p99 from the moment an event left the client to its arrival at the receiver,
the process's peak RSS (VmHWM) and its CPU time per delivered event (/proc utime + stime, all threads). Every
operator figure is printed with its ratio to the relay's.

Slow receiver: a webhook whose receiver answers after 1 s, 2,000 events over 500 entities, ``ordering: entity``,
``maxInFlight`` 64; events/s delivered (until all are delivered or the time bound), and the most requests in flight
and connections open at the receiver at once.

Without ``spec.delivery.ordering`` in the CRD the API server refuses the ``entity`` webhooks; then those runs are
skipped with a message saying so, the rest still run, and the slow receiver runs with the default ordering.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from engine_bench import ReceiverProcess
from operator_process import Measured, Operator, PySpy, Relay, event, kubectl, post_each, webhook

from controlplane.cluster import ControlPlane

NAMESPACE = "bench-peer"
#: Entity type routed to each ordering's webhook (and the relay's), so one operator serves every run.
ENTITY_TYPE = {"webhook": "table", "entity": "topic", "slow": "dashboard"}
STALL_SECONDS = 60.0


@dataclass
class Row:
    rate: float
    p50: float
    p99: float
    rss_peak_mb: float
    cpu_ms: float
    delivered: int


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(target: Measured, port: int, receiver: ReceiverProcess, session: aiohttp.ClientSession,
                  events: list[dict[str, Any]], concurrency: int) -> Row:  # fmt: skip
    """Post ``events`` one per POST to ``target`` and wait for all of them at the receiver (or a 60 s stall)."""
    await receiver.reset(session)
    exact_peak = target.reset_peak()
    rss_peak, cpu0 = target.rss_mb(), target.cpu_seconds()
    started = time.perf_counter()
    posting = asyncio.ensure_future(post_each(port, events, concurrency))
    seen, progress_at = 0, time.perf_counter()
    while not posting.done() or seen < len(events):
        if not exact_peak:
            rss_peak = max(rss_peak, target.rss_mb())
        await asyncio.sleep(0.02)
        now_seen = await receiver.count(session)
        if now_seen != seen:
            seen, progress_at = now_seen, time.perf_counter()
        elif posting.done() and time.perf_counter() - progress_at > STALL_SECONDS:
            print(f"    stalled: {seen} of {len(events)} delivered, no progress for {STALL_SECONDS:.0f} s")
            break
    elapsed, cpu = time.perf_counter() - started, target.cpu_seconds() - cpu0
    acked = posting.result()
    arrivals: dict[str, float] = (await receiver.stats(session))["arrivals"]  # type: ignore[assignment]
    latencies = [(arrivals[i] - t) * 1000 for i, t in acked.items() if i in arrivals]
    peak = target.peak_rss_mb() if exact_peak else rss_peak
    delivered = len(latencies)
    return Row(delivered / elapsed, _pct(latencies, 0.5), _pct(latencies, 0.99), peak,
               cpu * 1000 / max(1, delivered), delivered)  # fmt: skip


def _apply(plane: ControlPlane, manifest: dict[str, Any]) -> str | None:
    """Apply one Webhook; the API server's refusal (None when accepted), also when it pruned spec.delivery."""
    try:
        kubectl(plane, "apply", "--validate=strict", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(manifest),
                check=False)  # fmt: skip
    except RuntimeError as exc:
        return str(exc)
    wanted = manifest["spec"].get("delivery", {}).get("ordering")
    if wanted:
        got = kubectl(plane, "get", "webhook", "-n", NAMESPACE, manifest["metadata"]["name"],
                      "-o", "jsonpath={.spec.delivery.ordering}")  # fmt: skip
        if got != wanted:
            return f"the API server dropped spec.delivery.ordering (stored {got!r}, sent {wanted!r})"
    return None


def _ratio(ours: float, ceiling: float) -> str:
    return f"{ours / ceiling:5.2f}x" if ceiling > 0 else "  -  "


async def peer_and_slow(plane: ControlPlane, workdir: Path, receiver: ReceiverProcess, runs: list[tuple[str, int, int]],
                        *, max_in_flight: int, slow_events: int, slow_seconds: float | None,
                        py_spy: Path | None) -> None:  # fmt: skip
    """``runs``: (ordering, concurrency, events) each; ``slow_seconds`` None: no slow-receiver run."""
    kubectl(plane, "create", "namespace", NAMESPACE)
    refused: str | None = None
    entity = {"ordering": "entity", "maxInFlight": max_in_flight}
    count = 1
    kubectl(plane, "apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(
        webhook("peer-webhook", f"{receiver.base}/hook/webhook", ENTITY_TYPE["webhook"])))  # fmt: skip
    if any(ordering == "entity" for ordering, _, _ in runs) or slow_seconds is not None:
        refused = _apply(plane, webhook("peer-entity", f"{receiver.base}/hook/entity", ENTITY_TYPE["entity"],
                                        delivery=entity))  # fmt: skip
        count += refused is None
    if refused:
        print(
            "  NOTE: the API server refused spec.delivery.ordering: entity, so the CRD does not have it yet "
            "(issue 12 part 2); the ordering: entity runs are skipped and the slow receiver runs with the default "
            f"ordering (one request in flight).\n  API server said: {refused.splitlines()[-1]}",
            flush=True,
        )
    if slow_seconds is not None:
        slow = webhook("slow", f"{receiver.base}/slow/peer", ENTITY_TYPE["slow"], delivery=None if refused else entity)
        kubectl(plane, "apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(slow))
        count += 1
    operator = Operator(plane, workdir / "peer", NAMESPACE)
    relay = Relay(f"{receiver.base}/hook/relay")
    try:
        operator.wait_ready(count)
        await _runs(operator, relay, receiver, [r for r in runs if not (refused and r[0] == "entity")],
                    max_in_flight, py_spy)  # fmt: skip
        if slow_seconds is not None:
            await _slow(operator, receiver, slow_events, slow_seconds, "webhook" if refused else "entity",
                        max_in_flight)  # fmt: skip
    finally:
        relay.stop()
        operator.stop()


async def _runs(operator: Operator, relay: Relay, receiver: ReceiverProcess, runs: list[tuple[str, int, int]],
                max_in_flight: int, py_spy: Path | None) -> None:  # fmt: skip
    if not runs:
        return
    if py_spy is not None:
        py_spy.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any load
    print(f"  {'ordering':<9} {'clients':>7} {'events':>7} | {'delivered/s':>18} | {'p50 ms':>15} | {'p99 ms':>15} | "
          f"{'RSS peak MiB':>15} | {'CPU ms/event':>15}\n  (each operator figure, then its ratio to the relay "
          f"measured just before it; relay figures on the line below)", flush=True)  # fmt: skip
    base = 0
    async with aiohttp.ClientSession() as session:
        for ordering, concurrency, count in runs:
            events = [event(60_000_000 + base + i, ENTITY_TYPE[ordering]) for i in range(count)]
            base += count
            ceiling = await measure(relay, relay.intake, receiver, session, events, concurrency)
            spy = None
            if py_spy is not None:
                spy = PySpy(operator.proc.pid, py_spy / f"{ordering}-c{concurrency}-n{count}.txt")
            try:
                ours = await measure(operator, operator.intake, receiver, session, events, concurrency)
            finally:
                if spy is not None:
                    spy.stop()
            label = ordering if ordering == "webhook" else f"entity/{max_in_flight}"
            print(_line(f"{label:<9} {concurrency:>7} {count:>7}", ours, ceiling)
                  + ("" if ours.delivered == count else "  INCOMPLETE"), flush=True)  # fmt: skip
            print(_line(f"{'  relay':<9} {'':>7} {'':>7}", ceiling, None), flush=True)


def _line(head: str, row: Row, ceiling: Row | None) -> str:
    """One table line: each figure, then (for the operator) its ratio to the relay's."""
    cells = []
    for name, fmt in (("rate", ">11,.0f"), ("p50", ">8.1f"), ("p99", ">8.1f"), ("rss_peak_mb", ">8.0f"),
                      ("cpu_ms", ">8.3f")):  # fmt: skip
        value = getattr(row, name)
        ratio = _ratio(value, getattr(ceiling, name)) if ceiling else " " * 6
        cells.append(f"{value:{fmt}} {ratio}")
    return "  " + head + " | " + " | ".join(cells)


async def _slow(operator: Operator, receiver: ReceiverProcess, count: int, bound: float, ordering: str,
                max_in_flight: int) -> None:  # fmt: skip
    events = [event(70_000_000 + i, ENTITY_TYPE["slow"]) for i in range(count)]
    for i, item in enumerate(events):
        item["entityId"] = f"entity-{i % 500}"
    async with aiohttp.ClientSession() as session:
        await receiver.reset(session)
        started = time.perf_counter()
        await post_each(operator.intake, events, 16)
        delivered = 0
        while delivered < count and time.perf_counter() - started < bound:
            await asyncio.sleep(0.2)
            delivered = await receiver.count(session)
        elapsed = time.perf_counter() - started
        state = await receiver.stats(session)
    setting = f"ordering: entity, maxInFlight {max_in_flight}" if ordering == "entity" else "ordering: webhook"
    print(f"  slow receiver (1 s per request, {count:,} events over 500 entities, {setting}): {delivered:,} delivered "
          f"in {elapsed:.1f} s = {delivered / elapsed:.1f} events/s; at most {state['max_in_flight']} requests in "
          f"flight, {state['max_slow_connections']} connections open to the slow endpoint at once "
          f"({state['max_connections']} on the receiver in all, the bench's own polling connection included)",
          flush=True)  # fmt: skip
