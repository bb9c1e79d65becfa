"""What the operator benchmarks share: kubectl, manifests and events, the operator (and the relay) as processes
measured from /proc, and the clients that post to their intake.

CPU is user + system time of every thread (``/proc/<pid>/stat`` utime + stime, as the receiver's CPU in the
engine bench); the peak RSS is ``VmHWM`` of ``/proc/<pid>/status``, reset before each run by writing 5 to
``/proc/<pid>/clear_refs`` (Linux resets the high-water mark to the current RSS), so each run's peak is its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hack"))

from controlplane.cluster import ControlPlane, free_port

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
TOKEN = "bench-token"


def kubectl(plane: ControlPlane, *args: str, stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run([str(plane.binaries.kubectl), f"--kubeconfig={plane.kubeconfig}", *args], input=stdin,
                            capture_output=True, text=True, check=False)  # fmt: skip
    if result.returncode != 0:
        if not check:
            raise RuntimeError(result.stderr.strip()[-2000:])
        raise SystemExit(f"kubectl {' '.join(args)} failed: {result.stderr[-2000:]}")
    return result.stdout


def webhook(name: str, url: str, entity: str, batch: int = 1, delivery: dict[str, Any] | None = None,
            timeout: int = 30) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {"webhookType": "Generic", "batchSize": batch,
                            "eventFilters": [{"eventType": "entityUpdated", "entities": [entity]}],
                            "webhookConfig": {"endpoint": url, "timeout": timeout}}  # fmt: skip
    if delivery:
        spec["delivery"] = delivery
    return {"apiVersion": "events.open-metadata.org/v1alpha1", "kind": "Webhook", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def event(i: int, entity: str = "table") -> dict[str, Any]:
    return {"id": f"op-bench-{i:010d}", "eventType": "entityUpdated", "entityType": entity, "entityId": f"e{i}",
            "timestamp": 1_767_000_000_000 + i, "userName": "bench", "entityFullyQualifiedName": f"svc.db.s.t{i}",
            "changeDescription": {"fieldsUpdated": [{"name": "description", "oldValue": "a" * 300,
                                                     "newValue": "b" * 300}]},
            "entity": {"id": f"e{i}", "name": f"t{i}", "description": "c" * 200}}  # fmt: skip


class Measured:
    """A process measured from /proc: CPU seconds so far and the peak RSS since the last ``reset_peak``."""

    proc: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """User + system CPU of the process (all threads) so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _status(self, field: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def rss_mb(self) -> float:
        return self._status("VmRSS")

    def reset_peak(self) -> bool:
        """Make VmHWM start again from the current RSS (False where the kernel refuses it)."""
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def peak_rss_mb(self) -> float:
        return self._status("VmHWM")


class Operator(Measured):
    def __init__(self, plane: ControlPlane, workdir: Path, namespace: str) -> None:
        self.intake, self.health = free_port(), free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "tokens").write_text(TOKEN + "\n")
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "WEBHOOK_OPERATOR_NAMESPACES": namespace,
               "WEBHOOK_OPERATOR_STORE_PATH": str(workdir / "store.db"),
               "WEBHOOK_OPERATOR_INTAKE_ADDRESS": f"127.0.0.1:{self.intake}",
               "WEBHOOK_OPERATOR_HEALTH_ADDRESS": f"127.0.0.1:{self.health}",
               "WEBHOOK_OPERATOR_INTAKE_TOKEN_FILE": str(workdir / "tokens"),
               "WEBHOOK_OPERATOR_ALLOW_LOOPBACK": "true", "WEBHOOK_OPERATOR_LOG_LEVEL": "WARNING"}  # fmt: skip
        self.log_path = workdir / "operator.log"
        self.log = self.log_path.open("wb")
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
                raise SystemExit(f"operator exited; its log: {self.log_path.read_text()[-3000:]}")
            ready = self.readyz()
            if ready and ready.get("webhooks", 0) >= count:
                return time.monotonic() - self.started
            time.sleep(0.2)
        raise SystemExit(f"operator not ready with {count} webhooks after {timeout} s")

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.health}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


class Relay(Measured):
    """bench/relay.py in its own process: the same-run ceiling of the peer shape."""

    def __init__(self, target: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-relay-"))
        port_file = self.tmp / "port"
        self.proc = subprocess.Popen([sys.executable, str(HERE / "relay.py"), str(port_file), target])
        deadline = time.monotonic() + 10
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("benchmark relay did not start")
            time.sleep(0.05)
        self.intake = int(port_file.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class PySpy:
    """``py-spy record`` attached to a process for one run (raw collapsed stacks, GIL-holding samples only)."""

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        exe = Path(sys.executable).parent / "py-spy"
        self.proc = subprocess.Popen([str(exe), "record", "--pid", str(pid), "--format", "raw", "--gil",
                                      "--rate", str(rate), "--output", str(out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        time.sleep(1.0)  # let it attach before the load starts

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


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


async def post_each(port: int, events: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    """One event per POST (the shape OpenMetadata sends) from ``concurrency`` clients; send times by id."""
    acked: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    pending = iter(events)
    url = f"http://127.0.0.1:{port}/api/v1/events"
    bodies = {item["id"]: json.dumps(item).encode() for item in events}  # encoded up front: not the client's time
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def client() -> None:
            for item in pending:
                sent = time.time()  # latency counts from the moment the event left the client
                async with session.post(url, data=bodies[item["id"]], headers=headers) as resp:
                    assert resp.status == 202, await resp.text()
                acked[item["id"]] = sent

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return acked
