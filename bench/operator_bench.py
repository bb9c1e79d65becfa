"""Operator benchmark: the whole product on the local control plane.

    .venv/bin/python bench/operator_bench.py [--events 3000] [--webhooks 10000] [--quick]

(a) End to end through the intake with the operator running: events POSTed to /api/v1/events (50 per post,
    each post acknowledged only once durable), delivered to a loopback receiver process; events/s accepted and
    delivered, intake -> receiver latency p50/p99, against the same-run bare aiohttp ceiling (1 and 64 in flight).
(c) Peer shape (``--peer``), the shape OpenMetadata itself sends and the one the Flux comparison in
    docs/performance.md used: one event per POST from 1, 16 and 64 concurrent clients (2,000 events each, and
    10,000 at 16), a Generic webhook with batchSize 1; delivered/s, p50/p99 intake -> receiver, the operator's RSS
    peak and its CPU time per delivered event (from /proc, user + system, all its threads). Then a slow receiver
    (1 s per request) for a bounded time: events/s delivered, the most requests in flight at once and the most
    sockets the receiver had open.
(b) Scale: N Webhook resources in one namespace created before the operator starts; time until the operator has
    registered all of them (readyz reports the count), operator RSS, then status patches per webhook per minute
    under a steady event stream that matches 100 of them.

Goals (not tests): all registered <= 60 s for 10,000, RSS <= 400 MB, <= 1 status patch per webhook per 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hack"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_bench import ReceiverProcess, Result, ceiling

from controlplane.cluster import ControlPlane, free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"


def kubectl(plane: ControlPlane, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([str(plane.binaries.kubectl), f"--kubeconfig={plane.kubeconfig}", *args], input=stdin,
                            capture_output=True, text=True, check=False)  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {result.stderr[-2000:]}")
    return result.stdout


def webhook(name: str, url: str, entity: str, batch: int = 1) -> dict[str, Any]:
    return {"apiVersion": "events.open-metadata.org/v1alpha1", "kind": "Webhook", "metadata": {"name": name},
            "spec": {"webhookType": "Generic", "batchSize": batch,
                     "eventFilters": [{"eventType": "entityUpdated", "entities": [entity]}],
                     "webhookConfig": {"endpoint": url, "timeout": 30}}}  # fmt: skip


def event(i: int, entity: str = "table") -> dict[str, Any]:
    return {"id": f"op-bench-{i:010d}", "eventType": "entityUpdated", "entityType": entity, "entityId": f"e{i}",
            "timestamp": 1_767_000_000_000 + i, "userName": "bench", "entityFullyQualifiedName": f"svc.db.s.t{i}",
            "changeDescription": {"fieldsUpdated": [{"name": "description", "oldValue": "a" * 300,
                                                     "newValue": "b" * 300}]},
            "entity": {"id": f"e{i}", "name": f"t{i}", "description": "c" * 200}}  # fmt: skip


class Operator:
    def __init__(self, plane: ControlPlane, workdir: Path, namespace: str) -> None:
        self.intake, self.health = free_port(), free_port()
        (workdir / "tokens").write_text(TOKEN + "\n")
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "WEBHOOK_OPERATOR_NAMESPACES": namespace,
               "WEBHOOK_OPERATOR_STORE_PATH": str(workdir / "store.db"),
               "WEBHOOK_OPERATOR_INTAKE_ADDRESS": f"127.0.0.1:{self.intake}",
               "WEBHOOK_OPERATOR_HEALTH_ADDRESS": f"127.0.0.1:{self.health}",
               "WEBHOOK_OPERATOR_INTAKE_TOKEN_FILE": str(workdir / "tokens"),
               "WEBHOOK_OPERATOR_ALLOW_LOOPBACK": "true", "WEBHOOK_OPERATOR_LOG_LEVEL": "WARNING"}  # fmt: skip
        self.log = (workdir / "operator.log").open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "webhook_operator.cli.main", "run"], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip

    def readyz(self) -> dict[str, Any] | None:
        try:
            url = f"http://127.0.0.1:{self.health}/readyz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data
        except OSError:
            return None

    def wait_ready(self, count: int, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("operator exited")
            ready = self.readyz()
            if ready and ready.get("webhooks", 0) >= count:
                return time.monotonic() - self.started
            time.sleep(0.2)
        raise SystemExit(f"operator not ready with {count} webhooks after {timeout} s")

    def cpu_seconds(self) -> float:
        """User + system CPU of the operator process (all threads) so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.health}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


async def post_all(port: int, events: list[dict[str, Any]], chunk: int = 50) -> dict[str, float]:
    acked: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        for offset in range(0, len(events), chunk):
            part = events[offset : offset + chunk]
            async with session.post(f"http://127.0.0.1:{port}/api/v1/events", json=part, headers=headers) as resp:
                assert resp.status == 202, await resp.text()
            now = time.time()
            acked.update({e["id"]: now for e in part})
    return acked


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
    operator = Operator(plane, workdir / "e2e", "bench-e2e") if (workdir / "e2e").mkdir() is None else None
    assert operator is not None
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


async def post_each(port: int, events: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    """One event per POST (the shape OpenMetadata sends) from ``concurrency`` clients; send times by id."""
    acked: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    pending = iter(events)
    url = f"http://127.0.0.1:{port}/api/v1/events"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def client() -> None:
            for item in pending:
                sent = time.time()  # latency counts from the moment the event left the client
                async with session.post(url, data=json.dumps(item), headers=headers) as resp:
                    assert resp.status == 202, await resp.text()
                acked[item["id"]] = sent

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return acked


def socket_count(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue
    return count


async def peer_shape(plane: ControlPlane, workdir: Path, receiver: ReceiverProcess, runs: list[tuple[int, int]],
                     slow_seconds: float) -> None:  # fmt: skip
    kubectl(plane, "create", "namespace", "bench-peer")
    manifests = [webhook("peer", f"{receiver.base}/hook/peer", "table"),
                 webhook("slow", f"{receiver.base}/slow/peer", "dashboard")]  # fmt: skip
    kubectl(plane, "apply", "-n", "bench-peer", "-f", "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}))  # fmt: skip
    (workdir / "peer").mkdir()
    operator = Operator(plane, workdir / "peer", "bench-peer")
    operator.wait_ready(2)
    print(f"  {'clients':>7} {'events':>7} {'delivered/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'RSS peak MB':>12} "
          f"{'CPU ms/event':>13}", flush=True)  # fmt: skip
    base = 0
    async with aiohttp.ClientSession() as session:
        for concurrency, count in runs:
            await receiver.reset(session)
            events = [event(60_000_000 + base + i) for i in range(count)]
            base += count
            rss_peak, cpu0 = operator.rss_mb(), operator.cpu_seconds()
            started = time.perf_counter()
            posting = asyncio.ensure_future(post_each(operator.intake, events, concurrency))
            while not posting.done() or await receiver.count(session) < count:
                rss_peak = max(rss_peak, operator.rss_mb())
                await asyncio.sleep(0.05)
            elapsed, cpu = time.perf_counter() - started, operator.cpu_seconds() - cpu0
            acked = posting.result()
            arrivals: dict[str, float] = (await receiver.stats(session))["arrivals"]  # type: ignore[assignment]
            result = Result("peer", count, count, elapsed, [(arrivals[i] - t) * 1000 for i, t in acked.items()])
            print(f"  {concurrency:>7} {count:>7} {result.events_per_s:>12,.0f} {result.pct(0.5):>8.1f} "
                  f"{result.pct(0.99):>8.1f} {rss_peak:>12.0f} {cpu * 1000 / count:>13.2f}", flush=True)  # fmt: skip
        # A receiver that answers after 1 s, for a bounded time: what one slow endpoint gets out of the operator.
        await receiver.reset(session)
        events = [event(70_000_000 + i, "dashboard") for i in range(2000)]
        for item in events:
            item["entityId"] = f"entity-{int(item['id'][-6:]) % 500}"
        await post_each(operator.intake, events, 16)
        started, sockets = time.perf_counter(), 0
        while time.perf_counter() - started < slow_seconds:
            sockets = max(sockets, socket_count(receiver.proc.pid))
            await asyncio.sleep(0.2)
        state = await receiver.stats(session)
        delivered = int(state["events"])  # type: ignore[call-overload]
        print(f"  slow receiver (1 s per request, 2,000 events over 500 entities): {delivered / slow_seconds:.1f} "
              f"events/s delivered in {slow_seconds:.0f} s; at most {state['max_in_flight']} requests in flight, "
              f"{sockets} sockets open in the receiver (listener included)", flush=True)  # fmt: skip
    operator.stop()


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
    (workdir / "scale").mkdir()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--webhooks", type=int, default=10000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--peer", action="store_true", help="only the peer shape (c)")
    parser.add_argument("--slow-seconds", type=float, default=20.0, help="how long the slow-receiver run lasts")
    args = parser.parse_args()
    n, count = (300, 500) if args.quick else (args.events, args.webhooks)
    workdir = Path(tempfile.mkdtemp(prefix="operator-bench-"))
    plane = ControlPlane(workdir / "cluster")
    receiver = ReceiverProcess()
    try:
        plane.start()
        kubectl(plane, "apply", "--server-side", "-f", str(ROOT / "crds" / "webhooks.yaml"))
        kubectl(plane, "wait", "--for=condition=Established", "crd/webhooks.events.open-metadata.org")
        seq = asyncio.run(ceiling(receiver, n, 1))
        conc = asyncio.run(ceiling(receiver, n * 2, 64))
        if args.peer:
            print(f"ceiling: 1 in flight {seq.events_per_s:,.0f} req/s; 64 in flight {conc.events_per_s:,.0f} req/s")
            print("(c) peer shape: one event per POST, Generic webhook, batchSize 1, ordering: webhook", flush=True)
            small = 300 if args.quick else 2000
            runs = [(1, small), (16, small), (64, small)] + ([] if args.quick else [(16, 10_000)])
            asyncio.run(peer_shape(plane, workdir, receiver, runs, 5.0 if args.quick else args.slow_seconds))
            return
        print("(a) end to end through the intake", flush=True)
        results = asyncio.run(end_to_end(plane, workdir, receiver, n))
        print(f"\nceiling: 1 in flight {seq.events_per_s:,.0f} req/s; 64 in flight {conc.events_per_s:,.0f} req/s")
        for r in results:
            print(
                f"  {r.name:<32} {r.events_per_s:>8,.0f} ev/s delivered  {r.events_per_s / conc.events_per_s:6.1%}"
                f" of the 64-in-flight ceiling  p50 {r.pct(0.5):7.1f} ms  p99 {r.pct(0.99):7.1f} ms"
            )
        print(f"\n(b) scale: {count} Webhook resources", flush=True)
        scale(plane, workdir, receiver, count)
    finally:
        receiver.stop()
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
