"""CPU per event of the engine, in process: intake parse → submit → deliver, with a sender that sends nothing.

What it measures is Python CPU time (``time.process_time``: this process, every thread, so the store's executor
threads count), not wall throughput: on a shared machine wall rates move by 2x with load, CPU time per delivery much
less. No network and no receiver: the sender answers 200 at once, so what is left is exactly the operator's own work
per event (parsing, validation, routing, the SQLite commit at ``synchronous=NORMAL``, rendering, signing, the
attempt record, metrics, the completion commit).

Events are the sample ChangeEvents of ``examples/events`` (real OpenMetadata shapes, 1-144 KB), each given a fresh
id, posted one event per body as OpenMetadata does, by 16 concurrent producers. Runs:

* intake only: ``parse_events`` of one body, µs per event;
* intake over HTTP: the intake application (``intake.app.build_app``) on a loopback port, with a submitter that
  accepts at once, and 16 aiohttp clients in this same process posting one event per POST: µs of CPU per post,
  client side included (the same client work in every run, so differences are the server's);
* batchSize 1, one Generic webhook; batchSize 10, one Generic webhook; batchSize 1, 100 Generic webhooks (fan-out):
  µs of CPU per delivery (parse + submit + deliver, divided by deliveries).

Every figure is also printed as a ratio of a baseline measured in the same run: ``json.loads`` + ``json.dumps`` of
the same bodies, µs per event, the least any JSON service could do with them. Never a timed test.

    .venv/bin/python bench/cpu_bench.py [--events 2000] [--repeat 3] [--profile bs1|bs10|fanout]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from webhook_operator.api.events import ChangeEvent
from webhook_operator.api.webhook import WebhookSpec
from webhook_operator.delivery.sender import Outcome, OutcomeKind, Request
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.graph import build_graph
from webhook_operator.intake.app import build_app
from webhook_operator.intake.auth import StaticTokens
from webhook_operator.intake.parsing import parse_events
from webhook_operator.store.sqlite import SqliteStore

EVENTS_DIR = Path(__file__).resolve().parent.parent / "examples" / "events"
PRODUCERS = 16


class NoopSender:
    """Answers every request with 200 at once (and reads nothing): the cost left is the operator's own."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, request: Request) -> Outcome:
        self.sent += 1
        return Outcome(OutcomeKind.SUCCESS, 200, 0.1)

    async def close(self) -> None:
        return None


def sample_bodies(count: int) -> list[bytes]:
    """``count`` single-event bodies as OpenMetadata sends them (indented JSON as stored in examples/events), each
    with a unique id; event types made ``entityUpdated`` so that one filter routes them all."""
    templates = []
    for path in sorted(EVENTS_DIR.glob("[0-9]*.json")):
        event = json.loads(path.read_text(encoding="utf-8"))
        event["eventType"] = "entityUpdated"
        templates.append(event)
    bodies = []
    for i in range(count):
        event = dict(templates[i % len(templates)])
        event["id"] = f"cpu-bench-{i:08d}"
        bodies.append(json.dumps(event, ensure_ascii=False).encode("utf-8"))
    return bodies


def baseline_us(bodies: list[bytes]) -> float:
    """json.loads + compact json.dumps of every body: µs of CPU per event."""
    started = time.process_time()
    for body in bodies:
        json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return (time.process_time() - started) * 1e6 / len(bodies)


def intake_us(bodies: list[bytes]) -> float:
    started = time.process_time()
    for body in bodies:
        parse_events(body)
    return (time.process_time() - started) * 1e6 / len(bodies)


@dataclass(frozen=True)
class _Accepted:
    accepted: int
    duplicates: int
    queued: int


class InstantSubmitter:
    """Accepts every post at once: what is left is the intake's HTTP handling and parsing."""

    async def submit(self, events: Sequence[ChangeEvent], bodies: Sequence[bytes] | None = None) -> _Accepted:
        return _Accepted(len(events), 0, len(events))


async def http_us(bodies: list[bytes]) -> float:
    """One event per POST through the intake app on loopback, 16 clients in process: µs of CPU per post."""
    app = build_app(InstantSubmitter(), tokens=StaticTokens(["bench"]), allow_anonymous=False, hmac_secret=None)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/events"
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    pending = iter(bodies)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=PRODUCERS)) as session:

        async def client() -> None:
            for body in pending:
                async with session.post(url, data=body, headers=headers) as resp:
                    assert resp.status == 202, await resp.text()
                    await resp.read()

        started = time.process_time()
        await asyncio.gather(*(client() for _ in range(PRODUCERS)))
        cpu = time.process_time() - started
    await runner.cleanup()
    return cpu * 1e6 / len(bodies)


async def engine_us(
    bodies: list[bytes], *, webhooks: int, batch: int, profile: cProfile.Profile | None = None
) -> float:
    """parse + submit + deliver every body to ``webhooks`` Generic webhooks: µs of CPU per delivery."""
    with tempfile.TemporaryDirectory(prefix="cpu-bench-") as tmp:
        sender = NoopSender()
        graph = build_graph(store=SqliteStore(Path(tmp) / "store.db", synchronous="NORMAL"), sender=sender)
        await graph.open()
        for n in range(webhooks):
            spec = WebhookSpec.model_validate({
                "webhookType": "Generic", "batchSize": batch,
                "eventFilters": [{"eventType": "entityUpdated", "entities": ["*"]}],
                "webhookConfig": {"endpoint": f"http://127.0.0.1:9/hook/{n}", "secretKey": "bench-secret"},
            })  # fmt: skip
            await graph.dispatcher.register(WebhookTarget(key=f"bench/wh-{n}", spec=spec,
                                                          secrets=("bench-secret",)))  # fmt: skip
        pending = iter(bodies)

        async def producer() -> None:
            for body in pending:
                parsed = parse_events(body)
                await graph.submitter.submit(parsed.events, parsed.bodies)

        if profile is not None:
            profile.enable()
        started = time.process_time()
        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
        await graph.dispatcher.idle(within=600)
        cpu = time.process_time() - started
        if profile is not None:
            profile.disable()
        deliveries = graph.metrics.deliveries.labels("bench", "wh-0", "delivered")._value.get() * webhooks
        assert deliveries > 0 and sender.sent > 0, "nothing delivered"
        await graph.close()
    return cpu * 1e6 / (len(bodies) * webhooks)


RUNS = {"bs1": (1, 1, 1), "bs10": (1, 10, 1), "fanout": (100, 1, 10)}  # webhooks, batchSize, events divisor


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="events per run (fan-out: a tenth, to 100 webhooks)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measure; the median is printed")
    parser.add_argument("--only", help=f"comma-separated subset of intake, http, {', '.join(RUNS)}")
    parser.add_argument("--profile", choices=sorted(RUNS), help="instead: cProfile one run (loop thread CPU), top 20")
    args = parser.parse_args()
    bodies = sample_bodies(args.events)
    if args.profile:
        webhooks, batch, divisor = RUNS[args.profile]
        await engine_us(bodies[: args.events // divisor], webhooks=webhooks, batch=batch)  # warm-up
        profile = cProfile.Profile(time.thread_time)  # CPU of the event-loop thread, not wall: no epoll waits
        await engine_us(sample_bodies(args.events // divisor), webhooks=webhooks, batch=batch, profile=profile)
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(20)
        print(out.getvalue())
        return
    chosen = args.only.split(",") if args.only else ["intake", "http", *RUNS]
    results: dict[str, list[float]] = {"baseline": [], **{name: [] for name in chosen}}
    for _ in range(args.repeat):  # interleaved, so drift in machine load hits every measure alike
        results["baseline"].append(baseline_us(bodies))
        if "intake" in chosen:
            results["intake"].append(intake_us(bodies))
        if "http" in chosen:
            results["http"].append(await http_us(bodies))
        for name, (webhooks, batch, divisor) in RUNS.items():
            if name in chosen:
                results[name].append(await engine_us(bodies[: len(bodies) // divisor], webhooks=webhooks,
                                                     batch=batch))  # fmt: skip
    base = statistics.median(results["baseline"])
    print(f"{len(bodies)} events, mean body {sum(map(len, bodies)) / len(bodies):.0f} bytes, median of {args.repeat}")
    print(f"  {'baseline: json.loads + json.dumps':<44} {base:8.1f} us/event   1.00x")
    labels = {
        "intake": "intake parse_events, one event per body",
        "http": "intake over HTTP, one event per POST",
        "bs1": "engine batchSize 1, 1 webhook",
        "bs10": "engine batchSize 10, 1 webhook",
        "fanout": "engine batchSize 1, 100 webhooks (fan-out)",
    }
    for name, label in labels.items():
        if name not in chosen:
            continue
        value = statistics.median(results[name])
        unit = "us/event" if name in ("intake", "http") else "us/dl   "
        spread = f"(runs {', '.join(f'{v:.0f}' for v in results[name])})"
        print(f"  {label:<44} {value:8.1f} {unit} {value / base:5.2f}x  {spread}")


if __name__ == "__main__":
    asyncio.run(main())
