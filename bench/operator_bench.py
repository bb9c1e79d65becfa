"""Operator benchmark: the whole product on the local control plane.

    .venv/bin/python bench/operator_bench.py                       # default: the peer shape, 2,000 events,
                                                                   # clients 1/16/64, ordering webhook and entity
    .venv/bin/python bench/operator_bench.py --scenario peer --concurrency 16 --events 2000 --ordering entity
    .venv/bin/python bench/operator_bench.py --scenario slow        # the slow receiver only
    .venv/bin/python bench/operator_bench.py --scenario all         # peer (2,000 and 10,000), slow, e2e, scale
    .venv/bin/python bench/operator_bench.py --scenario peer --concurrency 16 --ordering webhook --py-spy /tmp/spy

Scenarios (``--scenario``, comma-separated):

peer  The shape OpenMetadata itself sends, the one the Flux comparison in docs/performance.md used: one event per
      POST from ``--concurrency`` clients (default 1,16,64), ``--events`` each (default 2000; comma-separated for
      several), Generic webhook, batchSize 1, ``spec.delivery.ordering`` ``--ordering`` (default webhook,entity;
      ``entity`` with ``--max-in-flight``, default 64). Delivered/s, p50/p99 intake -> receiver, operator RSS peak
      and CPU ms per delivered event, each with its ratio to bench/relay.py measured the same way just before (see
      bench/peer_bench.py). ``--py-spy DIR`` records the operator during each run (raw stacks; summarise with
      bench/pyspy_top.py).
slow  A receiver that answers after 1 s, 2,000 events over 500 entities, ``ordering: entity``, maxInFlight 64:
      events/s delivered within ``--slow-seconds`` (default 60), the most requests in flight and connections open.
e2e   Through the intake with 50 events per post, each acknowledged once durable, batchSize 1 and 10; events/s
      accepted and delivered, p50/p99, against the same-run bare aiohttp ceiling (1 and 64 in flight).
scale ``--webhooks`` Webhook resources (default 10000) created before the operator starts: time until all are
      registered (readyz reports the count), RSS, then status patches per webhook per minute under a steady stream
      that matches 100 of them. Goals (not tests): all registered <= 60 s for 10,000, RSS <= 400 MB, <= 1 status
      patch per webhook per 2 s.

``--quick``: 300 events, 500 webhooks, a 10 s slow run: a smoke run of whatever scenarios are chosen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
from engine_bench import ReceiverProcess, Result, ceiling
from operator_process import ROOT, Operator, event, kubectl, post_all, webhook
from peer_bench import peer_and_slow

from controlplane.cluster import ControlPlane


async def end_to_end(plane: ControlPlane, workdir: Path, receiver: ReceiverProcess, n: int) -> list[Result]:
    kubectl(plane, "create", "namespace", "bench-e2e")
    for batch in (1, 10):
        kubectl(
            plane,
            "apply",
            "-n",
            "bench-e2e",
            "-f",
            "-",
            stdin=json.dumps(webhook(f"b{batch}", f"{receiver.base}/hook/{batch}", f"table{batch}", batch)),
        )
    operator = Operator(plane, workdir / "e2e", "bench-e2e")
    operator.wait_ready(2)
    results = []
    async with aiohttp.ClientSession() as session:
        for batch in (1, 10):
            await receiver.reset(session)
            count = n if batch == 1 else n * 3
            events = [event(batch * 10_000_000 + i, f"table{batch}") for i in range(count)]
            started = time.perf_counter()
            acked = await post_all(operator.intake, events)
            accepted_s = time.perf_counter() - started
            while await receiver.count(session) < count:
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            arrivals: dict[str, float] = (await receiver.stats(session))["arrivals"]  # type: ignore[assignment]
            lat = [(arrivals[i] - t) * 1000 for i, t in acked.items() if i in arrivals]
            results.append(Result(f"operator e2e batchSize {batch}", count, count, elapsed, lat))
            print(f"  batchSize {batch}: intake accepted {count / accepted_s:,.0f} ev/s", flush=True)
    operator.stop()
    return results


def scale(plane: ControlPlane, workdir: Path, receiver: ReceiverProcess, count: int) -> None:
    kubectl(plane, "create", "namespace", "bench-scale")
    started = time.monotonic()
    for offset in range(0, count, 500):
        items = [webhook(f"w{i:05d}", f"{receiver.base}/hook/s{i}", "topic" if i < 100 else f"none{i}")
                 for i in range(offset, min(count, offset + 500))]  # fmt: skip
        kubectl(
            plane,
            "apply",
            "-n",
            "bench-scale",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
    print(f"  created {count} Webhooks in {time.monotonic() - started:.0f} s", flush=True)
    operator = Operator(plane, workdir / "scale", "bench-scale")
    registered = operator.wait_ready(count)
    rss_ready = operator.rss_mb()
    print(f"  all {count} registered {registered:.1f} s after the operator started; RSS {rss_ready:.0f} MB", flush=True)
    # Steady stream: 20 events/s, each matching the 100 "topic" webhooks, for 60 s.
    before = operator.metric('webhook_operator_status_patches_total{result="ok"}')
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 60:
        asyncio.run(post_all(operator.intake, [event(50_000_000 + i + k, "topic") for k in range(10)], chunk=10))
        i += 10
        time.sleep(max(0.0, 0.5 - (time.monotonic() - t0) % 0.5))
    minutes = (time.monotonic() - t0) / 60
    patches = operator.metric('webhook_operator_status_patches_total{result="ok"}') - before
    print(f"  steady stream: {i} events x 100 webhooks in {minutes * 60:.0f} s; {patches:.0f} status patches = "
          f"{patches / 100 / minutes:.1f} per active webhook per minute (goal <= 30); RSS {operator.rss_mb():.0f} MB",
          flush=True)  # fmt: skip
    operator.stop()


def _list(text: str, kind: type = str) -> list:  # type: ignore[type-arg]
    return [kind(part) for part in text.split(",") if part]


SCENARIOS = ("peer", "slow", "e2e", "scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="peer", help=f"comma-separated: {', '.join(SCENARIOS)} or all")
    parser.add_argument("--events", default=None, help="events per run, comma-separated (peer: 2000; e2e: 3000; "
                        "all: peer 2000,10000)")  # fmt: skip
    parser.add_argument("--concurrency", default="1,16,64", help="peer: clients posting at once, comma-separated")
    parser.add_argument("--ordering", default="webhook,entity", help="peer: spec.delivery.ordering, comma-separated")
    parser.add_argument("--max-in-flight", type=int, default=64, help="spec.delivery.maxInFlight for ordering: entity")
    parser.add_argument("--slow-seconds", type=float, default=60.0, help="longest the slow-receiver run lasts")
    parser.add_argument("--py-spy", type=Path, default=None, help="peer: record the operator with py-spy into DIR")
    parser.add_argument("--webhooks", type=int, default=10000, help="scale: Webhook resources")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    args = parser.parse_args()
    scenarios = SCENARIOS if args.scenario == "all" else tuple(_list(args.scenario))
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    default_peer = "2000,10000" if args.scenario == "all" else "2000"
    sizes = [300] if args.quick else _list(args.events or default_peer, int)
    n = 300 if args.quick else (sizes[0] if args.events else 3000)
    count = 500 if args.quick else args.webhooks
    runs = [(o, c, e) for o in _list(args.ordering) for e in sizes for c in _list(args.concurrency, int)
            if e <= 2000 or c == 16]  # fmt: skip  # the 10,000-event runs at 16 clients only, as the issue's table
    workdir = Path(tempfile.mkdtemp(prefix="operator-bench-"))
    plane = ControlPlane(workdir / "cluster")
    receiver = ReceiverProcess()
    try:
        plane.start()
        kubectl(plane, "apply", "--server-side", "-f", str(ROOT / "crds" / "webhooks.yaml"))
        kubectl(plane, "wait", "--for=condition=Established", "crd/webhooks.events.open-metadata.org")
        seq = asyncio.run(ceiling(receiver, n, 1))
        conc = asyncio.run(ceiling(receiver, n * 2, 64))
        print(f"bare aiohttp client to the receiver: 1 in flight {seq.events_per_s:,.0f} req/s; 64 in flight "
              f"{conc.events_per_s:,.0f} req/s", flush=True)  # fmt: skip
        if "peer" in scenarios or "slow" in scenarios:
            print("peer shape: one event per POST, Generic webhook, batchSize 1", flush=True)
            slow = (10.0 if args.quick else args.slow_seconds) if "slow" in scenarios else None
            asyncio.run(peer_and_slow(plane, workdir, receiver, runs if "peer" in scenarios else [],
                                      max_in_flight=args.max_in_flight, slow_events=2000, slow_seconds=slow,
                                      py_spy=args.py_spy))  # fmt: skip
        if "e2e" in scenarios:
            print("end to end through the intake, 50 events per post", flush=True)
            for r in asyncio.run(end_to_end(plane, workdir, receiver, n)):
                print(
                    f"  {r.name:<32} {r.events_per_s:>8,.0f} ev/s delivered  {r.events_per_s / conc.events_per_s:6.1%}"
                    f" of the 64-in-flight ceiling  p50 {r.pct(0.5):7.1f} ms  p99 {r.pct(0.99):7.1f} ms"
                )
        if "scale" in scenarios:
            print(f"scale: {count} Webhook resources", flush=True)
            scale(plane, workdir, receiver, count)
    finally:
        receiver.stop()
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
