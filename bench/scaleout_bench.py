"""Scale-out benchmark (issue 15): several operator replicas on one PostgreSQL database, on the local control plane.

    .venv/bin/python bench/scaleout_bench.py [--events 3000] [--webhooks 10000] [--replicas 1,2,3] [--quick]

(a) The same stream through 1, 2 and 3 replicas: ``--events`` events, one per POST (the shape OpenMetadata sends)
    from 16 concurrent clients spread round-robin over every replica's intake, each event matching exactly one of
    12 Generic webhooks (batchSize 1), so the work can spread over the replicas through their leases. Per run:
    delivered/s (first post to last arrival at a loopback receiver process), p50/p99 intake → receiver, CPU
    milliseconds per event summed over the replicas (user + system of every thread, from /proc) and each replica's
    share, and delivered/s as a ratio of the same-run ceiling (a bare aiohttp client posting to the same receiver,
    64 in flight), like the other benchmarks. Each run starts on a fresh database and waits until every webhook has
    a live lease before posting.
(b) ``--webhooks`` Webhook resources (default 10,000) created before 3 replicas start together: seconds from the
    start until every webhook has a live lease (rows of the ``leases`` table), how many each replica owns, and each
    replica's RSS then.

This machine has 2 cores, shared with whatever else runs: more replicas than cores measure contention as much as
scale-out, and wall rates move with load. CPU per event is the steadier figure. Never a timed test.
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
from collections import Counter
from itertools import cycle
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hack"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_bench import ReceiverProcess, Result, ceiling
from operator_process import ROOT, TOKEN, Measured, event, kubectl, webhook

from controlplane.cluster import ControlPlane, free_port
from controlplane.postgres import PostgresServer

WEBHOOKS_A = 12
CLIENTS = 16


class Replica(Measured):
    """One ``webhook-operator run`` on the PostgreSQL store, with its replica id and ports."""

    def __init__(self, plane: ControlPlane, workdir: Path, namespace: str, dsn: str, replica: str,
                 lease_duration: int) -> None:  # fmt: skip
        self.intake, self.health = free_port(), free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "tokens").write_text(TOKEN + "\n")
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "WEBHOOK_OPERATOR_NAMESPACES": namespace,
               "WEBHOOK_OPERATOR_STORE": "postgres", "WEBHOOK_OPERATOR_POSTGRES_DSN": dsn,
               "WEBHOOK_OPERATOR_REPLICA_ID": replica, "WEBHOOK_OPERATOR_LEASE_DURATION": f"{lease_duration}s",
               "WEBHOOK_OPERATOR_ADVERTISE_ADDRESS": f"127.0.0.1:{self.intake}",
               "WEBHOOK_OPERATOR_INTAKE_ADDRESS": f"127.0.0.1:{self.intake}",
               "WEBHOOK_OPERATOR_HEALTH_ADDRESS": f"127.0.0.1:{self.health}",
               "WEBHOOK_OPERATOR_INTAKE_TOKEN_FILE": str(workdir / "tokens"),
               "WEBHOOK_OPERATOR_ALLOW_LOOPBACK": "true", "WEBHOOK_OPERATOR_LOG_LEVEL": "WARNING"}  # fmt: skip
        self.name = replica
        self.log_path = workdir / "operator.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "webhook_operator.cli.main", "run"], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"replica {self.name} exited; its log: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


async def _query(dsn: str, sql: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def live_owners(dsn: str) -> Counter[str]:
    """Live leases per owner, read straight from the ``leases`` table (the database's clock)."""
    try:
        rows = asyncio.run(
            _query(
                dsn,
                "SELECT owner, count(*) AS n FROM leases"
                " WHERE expires_at > extract(epoch FROM clock_timestamp()) GROUP BY owner",
            )
        )
    except (OSError, asyncpg.PostgresError):
        return Counter()  # the first replica has not created the table yet
    return Counter({r["owner"]: int(r["n"]) for r in rows})


def new_database(server: PostgresServer, name: str) -> str:
    admin = server.dsn("postgres")

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        finally:
            await conn.close()

    asyncio.run(create())
    return server.dsn(name)


def start_replicas(plane: ControlPlane, workdir: Path, namespace: str, dsn: str, count: int,
                   lease_duration: int) -> list[Replica]:  # fmt: skip
    return [Replica(plane, workdir / f"r{i}", namespace, dsn, f"r{i}", lease_duration) for i in range(count)]


def wait_owned(replicas: list[Replica], dsn: str, count: int, timeout: float) -> tuple[float | None, Counter[str]]:
    """Seconds until ``count`` leases are live at once (None: not within ``timeout``), and the owners then (or at
    the best moment seen)."""
    started, best = time.monotonic(), Counter[str]()
    while time.monotonic() - started < timeout:
        for replica in replicas:
            replica.check()
        owners = live_owners(dsn)
        if sum(owners.values()) >= count:
            return time.monotonic() - started, owners
        best = max(best, owners, key=lambda c: sum(c.values()))
        time.sleep(0.2)
    return None, best


async def post_spread(ports: list[int], events: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    """One event per POST from ``concurrency`` clients, each post to the next intake in turn; send time by id."""
    acked: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    pending = iter(events)
    urls = cycle([f"http://127.0.0.1:{port}/api/v1/events" for port in ports])
    bodies = {item["id"]: json.dumps(item).encode() for item in events}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def client() -> None:
            for item in pending:
                sent = time.time()
                async with session.post(next(urls), data=bodies[item["id"]], headers=headers) as resp:
                    assert resp.status == 202, await resp.text()
                acked[item["id"]] = sent

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return acked


async def stream_run(replicas: list[Replica], receiver: ReceiverProcess, events: list[dict[str, Any]]
                     ) -> tuple[Result, list[float]]:  # fmt: skip
    async with aiohttp.ClientSession() as session:
        await receiver.reset(session)
        cpu0 = [r.cpu_seconds() for r in replicas]
        started = time.perf_counter()
        posting = asyncio.ensure_future(post_spread([r.intake for r in replicas], events, CLIENTS))
        while not posting.done() or await receiver.count(session) < len(events):
            if posting.done() and posting.exception():
                raise posting.exception()  # type: ignore[misc]
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = [r.cpu_seconds() - c for r, c in zip(replicas, cpu0, strict=True)]
        acked = posting.result()
        arrivals: dict[str, float] = (await receiver.stats(session))["arrivals"]  # type: ignore[assignment]
    latencies = [(arrivals[i] - t) * 1000 for i, t in acked.items() if i in arrivals]
    return Result(f"{len(replicas)} replicas", len(events), len(events), elapsed, latencies, sum(cpu)), cpu


def throughput(plane: ControlPlane, server: PostgresServer, workdir: Path, receiver: ReceiverProcess,
               counts: list[int], n: int, ceiling_rate: float, lease_duration: int) -> None:  # fmt: skip
    print(f"  {'replicas':>8} {'events':>7} {'delivered/s':>12} {'vs ceiling':>10} {'vs 1':>6} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'CPU ms/event':>13}  per replica (CPU s)", flush=True)  # fmt: skip
    first: float | None = None
    for run, count in enumerate(counts):
        namespace = f"bench-scale-a{count}"
        kubectl(plane, "create", "namespace", namespace)
        items = [webhook(f"w{k:02d}", f"{receiver.base}/hook/a{k}", f"ent{k}") for k in range(WEBHOOKS_A)]
        kubectl(plane, "apply", "-n", namespace, "-f", "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))  # fmt: skip
        dsn = new_database(server, f"bench_a{count}")
        replicas = start_replicas(plane, workdir / f"a{count}", namespace, dsn, count, lease_duration)
        try:
            if wait_owned(replicas, dsn, WEBHOOKS_A, 300)[0] is None:
                raise SystemExit(f"not all {WEBHOOKS_A} webhooks owned after 300 s: {dict(live_owners(dsn))}")
            time.sleep(lease_duration / 2)  # let a balancer settle before measuring
            owners = live_owners(dsn)
            events = [event(80_000_000 + run * 1_000_000 + i, f"ent{i % WEBHOOKS_A}") for i in range(n)]
            result, cpu = asyncio.run(stream_run(replicas, receiver, events))
        finally:
            for replica in replicas:
                replica.stop()
        rate = result.events_per_s
        first = first or rate
        shares = ", ".join(f"{r.name} {c:.1f} ({owners.get(r.name, 0)} wh)" for r, c in zip(replicas, cpu, strict=True))
        print(f"  {count:>8} {n:>7} {rate:>12,.0f} {rate / ceiling_rate:>10.1%} {rate / first:>6.2f} "
              f"{result.pct(0.5):>8.1f} {result.pct(0.99):>8.1f} {result.cpu_seconds * 1000 / n:>13.2f}  {shares}",
              flush=True)  # fmt: skip


def many_webhooks(plane: ControlPlane, server: PostgresServer, workdir: Path, receiver: ReceiverProcess,
                  count: int, lease_duration: int) -> None:  # fmt: skip
    namespace = "bench-scale-b"
    kubectl(plane, "create", "namespace", namespace)
    started = time.monotonic()
    for offset in range(0, count, 500):
        items = [webhook(f"w{i:05d}", f"{receiver.base}/hook/s{i}", f"none{i}")
                 for i in range(offset, min(count, offset + 500))]  # fmt: skip
        kubectl(plane, "apply", "-n", namespace, "-f", "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))  # fmt: skip
    print(f"  created {count} Webhooks in {time.monotonic() - started:.0f} s", flush=True)
    dsn = new_database(server, "bench_b")
    replicas = start_replicas(plane, workdir / "b", namespace, dsn, 3, lease_duration)
    try:
        took, owners = wait_owned(replicas, dsn, count, 600)
        rss = ", ".join(f"{r.name} {r.rss_mb():.0f} MB" for r in replicas)
        when = f"{took:.1f} s after 3 replicas started" if took is not None else "NOT within 600 s (best moment)"
        print(f"  all {count} owned {when}; leases per replica {dict(sorted(owners.items()))}; RSS {rss}",
              flush=True)  # fmt: skip
        # Then three lease periods, sampled every second: do renewals keep up, does the spread hold?
        samples = []
        for _ in range(lease_duration * 3):
            time.sleep(1)
            samples.append(sum(live_owners(dsn).values()))
        rss = ", ".join(f"{r.name} {r.rss_mb():.0f} MB" for r in replicas)
        now = dict(sorted(live_owners(dsn).items()))
        print(f"  the next {len(samples)} s: live leases min {min(samples)}, max {max(samples)}, all {count} live in "
              f"{sum(n >= count for n in samples)} of {len(samples)} samples; now {now}; RSS {rss}",
              flush=True)  # fmt: skip
    finally:
        for replica in replicas:
            replica.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--webhooks", type=int, default=10000)
    parser.add_argument("--replicas", default="1,2,3", help="replica counts of part (a), comma-separated")
    parser.add_argument("--lease-duration", type=int, default=10, help="the operator's default")
    parser.add_argument("--quick", action="store_true", help="600 events, 1,000 webhooks")
    parser.add_argument("--only", choices=["a", "b"], help="run one part only")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (the replicas' logs)")
    args = parser.parse_args()
    n, count = (600, 1000) if args.quick else (args.events, args.webhooks)
    workdir = Path(tempfile.mkdtemp(prefix="scaleout-bench-"))
    plane = ControlPlane(workdir / "cluster")
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="scaleout-bench-pg-")))  # handed to the postgres user
    receiver = ReceiverProcess()
    try:
        plane.start()
        server.start()
        kubectl(plane, "apply", "--server-side", "-f", str(ROOT / "crds" / "webhooks.yaml"))
        kubectl(plane, "wait", "--for=condition=Established", "crd/webhooks.events.open-metadata.org")
        conc = asyncio.run(ceiling(receiver, n * 2, 64))
        print(f"ceiling: bare aiohttp client, 64 in flight: {conc.events_per_s:,.0f} req/s", flush=True)
        if args.only != "b":
            print(
                f"(a) the same stream through N replicas: {n} events, one per POST, {CLIENTS} clients over every "
                f"intake, {WEBHOOKS_A} Generic webhooks (batchSize 1), each event for one of them",
                flush=True,
            )
            counts = [int(c) for c in args.replicas.split(",")]
            throughput(plane, server, workdir, receiver, counts, n, conc.events_per_s, args.lease_duration)
        if args.only != "a":
            print(f"(b) {count} Webhooks over 3 replicas (lease duration {args.lease_duration} s)", flush=True)
            many_webhooks(plane, server, workdir, receiver, count, args.lease_duration)
    finally:
        receiver.stop()
        server.stop(immediate=True)
        plane.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
        if args.keep:
            print(f"replica logs kept under {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
