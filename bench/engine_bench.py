"""Delivery-engine benchmark: the engine against a bare aiohttp client, same receiver, same run.

    .venv/bin/python bench/engine_bench.py [--events 3000] [--quick]

(a) Ceiling: a bare aiohttp client POSTing ~1 KB JSON bodies to a loopback receiver (its own process), once with
    one request in flight (what ordered delivery to ONE webhook can use) and once with 64 in flight (what fan-out
    to many webhooks can use).
(b) Engine, built by the composition root (``graph.build_graph``) as the operator builds it: events submitted by 8
    concurrent producers (50 per call, like concurrent intake posts) to the durable SQLite store (synchronous=FULL,
    every event committed before submit returns) and delivered by the dispatcher through the real sender to the
    same receiver: batchSize 1 and 10 to one webhook, and batchSize 1 to 100 webhooks (fan-out). Latency is measured
    from the moment submit() returned (the event is durable) to the receiver's arrival time.
(c) p50/p99 latency at half the measured batchSize-1 rate, paced.

Prints events/s, deliveries/s, latency, every rate as a ratio of its ceiling, and this process's CPU time per
delivery (engine plus store threads; the figure that moves least with machine noise). Numbers vary with machine load;
goals (not tests): batchSize 1 >= 60 % of the ceiling, batchSize 10 >= 8x batchSize 1, fan-out >= 50 % of the
concurrent ceiling in deliveries/s, p99 <= 50 ms at half rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from webhook_operator import heap
from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookSpec
from webhook_operator.delivery.sender import AiohttpSender
from webhook_operator.delivery.ssrf import AddressPolicy
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.graph import build_graph
from webhook_operator.store.sqlite import SqliteStore

HERE = Path(__file__).resolve().parent


def make_event(i: int) -> ChangeEvent:
    """About 1 KB on the wire once formatted as the Generic payload."""
    return ChangeEvent.model_validate({
        "id": f"bench-{i:010d}", "eventType": "entityUpdated", "entityType": "table", "entityId": f"id-{i}",
        "timestamp": 1_767_000_000_000 + i, "userName": "ingestion-bot", "currentVersion": 0.2,
        "previousVersion": 0.1, "entityFullyQualifiedName": f"warehouse.sales.public.orders_{i}",
        "changeDescription": {"fieldsAdded": [], "fieldsDeleted": [], "fieldsUpdated": [
            {"name": "description", "oldValue": "x" * 200, "newValue": "y" * 200}]},
        "entity": {"id": f"id-{i}", "name": f"orders_{i}", "fullyQualifiedName": f"warehouse.sales.public.orders_{i}",
                   "description": "z" * 200, "owners": [{"type": "team", "name": "DataEngineering"}]},
    })  # fmt: skip


@dataclass
class Result:
    name: str
    events: int
    deliveries: int
    seconds: float
    latencies_ms: list[float]
    #: CPU seconds of this process (engine and store threads; the receiver is another process) while it ran.
    cpu_seconds: float = 0.0

    @property
    def cpu_us_per_delivery(self) -> float:
        return self.cpu_seconds * 1e6 / self.deliveries

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def deliveries_per_s(self) -> float:
        return self.deliveries / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ReceiverProcess:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-recv-"))
        port_file = self.tmp / "port"
        self.proc = subprocess.Popen([sys.executable, str(HERE / "receiver.py"), str(port_file)])
        deadline = time.monotonic() + 10
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("benchmark receiver did not start")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{int(port_file.read_text())}"

    async def reset(self, session: aiohttp.ClientSession) -> None:
        async with session.post(f"{self.base}/reset") as resp:
            resp.raise_for_status()

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, object]:
        async with session.get(f"{self.base}/stats") as resp:
            data: dict[str, object] = await resp.json()
            return data

    async def count(self, session: aiohttp.ClientSession) -> int:
        """Cheap progress poll (the full /stats with every arrival time is fetched once, at the end)."""
        async with session.get(f"{self.base}/count") as resp:
            return int((await resp.json())["events"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def ceiling(receiver: ReceiverProcess, count: int, concurrency: int) -> Result:
    body = json.dumps({"eventId": "c", "pad": "p" * 1000}).encode()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await receiver.reset(session)
        url = f"{receiver.base}/hook/0"
        remaining = iter(range(count))

        async def worker() -> None:
            for _ in remaining:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Result(f"ceiling, {concurrency} in flight", count, count, elapsed, [], cpu)


async def engine_run(receiver: ReceiverProcess, name: str, *, events: int, webhooks: int, batch: int,
                     pace: float | None = None, chunk: int = 50, submitters: int = 8) -> Result:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        # The sender with the operator's own settings (service.py): a per-host limit would keep every request on
        # aiohttp's client instead of the lean one the operator uses for http:// receivers.
        graph = build_graph(store=SqliteStore(Path(tmp) / "store.db", synchronous="FULL"),
                            sender=AiohttpSender(AddressPolicy(allow_loopback=True)), max_concurrency=64)  # fmt: skip
        await graph.open()
        dispatcher = graph.dispatcher
        for n in range(webhooks):
            spec = WebhookSpec.model_validate({
                "webhookType": "Generic", "batchSize": batch,
                "eventFilters": [{"eventType": "entityUpdated", "entities": ["table"]}],
                "webhookConfig": {"endpoint": f"{receiver.base}/hook/{n}", "timeout": 30},
            })  # fmt: skip
            await dispatcher.register(WebhookTarget(key=f"bench/wh-{n}", spec=spec))
        heap.settle()  # as the operator's start-up does once its Webhooks are registered
        batch_events = [make_event(i) for i in range(events)]
        durable_at: dict[str, float] = {}
        async with aiohttp.ClientSession() as session:
            await receiver.reset(session)
            started, cpu = time.perf_counter(), time.process_time()
            wall_start = time.time()
            interval = chunk / pace if pace else 0.0
            chunks = [batch_events[o : o + chunk] for o in range(0, events, chunk)]

            async def submit(part: list[ChangeEvent]) -> None:
                await dispatcher.submit(part)
                now = time.time()
                for event in part:
                    durable_at[event.id] = now

            if pace:  # one producer on a schedule: latency at a known rate
                for n, part in enumerate(chunks):
                    delay = wall_start + n * interval - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await submit(part)
            else:  # several concurrent producers, as concurrent intake posts are (they share group commits)
                pending = iter(chunks)

                async def producer() -> None:
                    for part in pending:
                        await submit(part)

                await asyncio.gather(*(producer() for _ in range(submitters)))
            expected = events * webhooks
            while await receiver.count(session) < expected:
                await asyncio.sleep(0.02)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            arrivals: dict[str, float] = (await receiver.stats(session))["arrivals"]  # type: ignore[assignment]
        await graph.close()
    latencies = [(arrivals[i] - t) * 1000 for i, t in durable_at.items() if i in arrivals]
    return Result(name, events, events * webhooks, elapsed, latencies, cpu)


def _row(result: Result, ceiling_rate: float, unit: str = "events") -> str:
    rate = result.events_per_s if unit == "events" else result.deliveries_per_s
    lat = f"p50 {result.pct(0.5):6.1f} ms  p99 {result.pct(0.99):6.1f} ms" if result.latencies_ms else ""
    return (
        f"{result.name:<42} {result.events:>7} ev {result.deliveries:>7} dl  {result.events_per_s:>8.0f} ev/s "
        f"{result.deliveries_per_s:>8.0f} dl/s  {rate / ceiling_rate:>6.1%} of ceiling  "
        f"cpu {result.cpu_us_per_delivery:5.0f} us/dl  {lat}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000, help="events for the batchSize-1 run")
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    args = parser.parse_args()
    n = 300 if args.quick else args.events
    receiver = ReceiverProcess()
    try:
        seq = await ceiling(receiver, n, 1)
        conc = await ceiling(receiver, n * 2, 64)
        b1 = await engine_run(receiver, "engine batchSize 1, 1 webhook", events=n, webhooks=1, batch=1)
        b10 = await engine_run(receiver, "engine batchSize 10, 1 webhook", events=n * 10, webhooks=1, batch=10)
        fan = await engine_run(receiver, "engine batchSize 1, 100 webhooks (fan-out)", events=max(30, n // 10),
                               webhooks=100, batch=1)  # fmt: skip
        half_rate = b1.events_per_s / 2
        paced = await engine_run(receiver, f"engine batchSize 1 paced at {half_rate:.0f} ev/s", events=n,
                                 webhooks=1, batch=1, pace=half_rate, chunk=5)  # fmt: skip
    finally:
        receiver.stop()
    print("\nceiling: bare aiohttp, ~1 KB JSON bodies, loopback receiver in its own process")
    print(f"  1 in flight : {seq.events_per_s:8.0f} req/s  cpu {seq.cpu_us_per_delivery:4.0f} us/req (client side)")
    print(f"  64 in flight: {conc.events_per_s:8.0f} req/s  cpu {conc.cpu_us_per_delivery:4.0f} us/req (client side)\n")
    print("engine (every event durable in SQLite, synchronous=FULL, before submit returns):")
    print("  " + _row(b1, seq.events_per_s) + "   [ratio vs 1-in-flight ceiling]")
    print("  " + _row(b1, conc.events_per_s) + "   [ratio vs 64-in-flight ceiling]")
    print("  " + _row(b10, conc.events_per_s) + f"   [{b10.events_per_s / b1.events_per_s:.1f}x batchSize 1]")
    print("  " + _row(fan, conc.events_per_s, unit="deliveries") + "   [deliveries/s vs 64-in-flight ceiling]")
    print("  " + _row(paced, seq.events_per_s))
    print(f"\nmedian latency of the paced run: {statistics.median(paced.latencies_ms):.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
