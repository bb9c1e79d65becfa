"""`make demo`: the whole story on the embedded default, on loopback.

1. start the local control plane (etcd, kube-apiserver, kube-controller-manager) and install the Webhook CRD;
2. start a receiver that prints what it gets, with one path that fails (HTTP 503) for the first seconds;
3. run the operator (`webhook-operator run`) against the control plane;
4. apply the seed's six example Webhooks (endpoints pointed at the receiver) and a "flaky" one;
5. stream the 40 sample OpenMetadata ChangeEvents into the intake, showing `kubectl get webhooks` as they flow:
   Delivered counts grow, the flaky webhook goes awaitingRetry, then recovers when its endpoint heals.

    python hack/demo.py [--events 40] [--fail-for 6] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from controlplane.cluster import ControlPlane, ControlPlaneError, free_port

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "examples" / "events"
TOKEN = "demo-intake-token"


class DemoReceiver:
    """Prints one line per request; /flaky answers 503 for ``fail_for`` seconds from its first request."""

    def __init__(self, fail_for: float) -> None:
        self.fail_for = fail_for
        self.heal_at: float | None = None
        self.port = free_port()
        self.count = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/{name}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self.loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        name = request.match_info["name"]
        if name == "flaky" and self.heal_at is None:
            self.heal_at = time.time() + self.fail_for
        if name == "flaky" and self.heal_at is not None and time.time() < self.heal_at:
            print(f"  receiver  /{name:<30} -> 503 (failing for {self.heal_at - time.time():.0f} s more)", flush=True)
            return web.Response(status=503)
        self.count += 1
        payload = json.loads(body)
        if isinstance(payload, dict) and "data" in payload:
            what = f"{len(payload['data'])} events: " + ", ".join(e["eventType"] for e in payload["data"][:3])
        elif isinstance(payload, dict) and "eventType" in payload:
            what = f"{payload['eventType']} {payload.get('entityFullyQualifiedName', '')}"
        elif isinstance(payload, dict) and "blocks" in payload:
            what = f"Slack message, {len(payload['blocks'])} blocks"
        elif isinstance(payload, dict) and payload.get("type") == "message":
            what = "MS Teams Adaptive Card"
        else:
            what = f"{len(body)} bytes"
        signed = " signed" if "X-OpenMetadata-Signature" in request.headers else ""
        print(f"  receiver  /{name:<30} <- {what[:70]}{signed}", flush=True)
        return web.Response(status=200)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


def kubectl(plane: ControlPlane, *args: str, stdin: str | None = None, show: bool = False) -> str:
    if show:
        print(f"\n$ kubectl {' '.join(args)}", flush=True)
    result = subprocess.run([str(plane.binaries.kubectl), f"--kubeconfig={plane.kubeconfig}", *args],
                            input=stdin, capture_output=True, text=True, check=False)  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    if show:
        print(result.stdout, end="", flush=True)
    return result.stdout


def post(port: int, events: list[dict[str, Any]]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/events", data=json.dumps(events).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback
        result: dict[str, Any] = json.loads(resp.read())
        return result


def wait_ready(port: int, operator: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if operator.poll() is not None:
            raise SystemExit(f"the operator exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the operator did not become ready:\n{log.read_text()[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40, help="how many sample events to stream (1-40)")
    parser.add_argument("--fail-for", type=float, default=6.0, help="seconds the flaky endpoint answers 503")
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="webhook-operator-demo-"))
    kubeconfig = ROOT / ".cluster" / "demo-kubeconfig"
    plane = ControlPlane(workdir, kubeconfig=kubeconfig)
    operator: subprocess.Popen[bytes] | None = None
    try:
        print("== starting the local control plane (etcd, kube-apiserver, kube-controller-manager)", flush=True)
        plane.start()
        print(f"   ready in {plane.startup_seconds:.1f} s at {plane.server}", flush=True)
        kubectl(plane, "get", "--raw", "/readyz", show=True)
        print()
        kubectl(plane, "apply", "--server-side", "-f", str(ROOT / "crds" / "webhooks.yaml"), show=True)
        kubectl(plane, "wait", "--for=condition=Established", "crd/webhooks.events.open-metadata.org")
        kubectl(plane, "create", "namespace", "demo", show=True)

        receiver = DemoReceiver(args.fail_for)
        intake, health = free_port(), free_port()
        (workdir / "tokens").write_text(TOKEN + "\n")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "WEBHOOK_OPERATOR_NAMESPACES": "demo",
               "WEBHOOK_OPERATOR_STORE_PATH": str(workdir / "store.db"),
               "WEBHOOK_OPERATOR_INTAKE_ADDRESS": f"127.0.0.1:{intake}",
               "WEBHOOK_OPERATOR_HEALTH_ADDRESS": f"127.0.0.1:{health}",
               "WEBHOOK_OPERATOR_INTAKE_TOKEN_FILE": str(workdir / "tokens"),
               "WEBHOOK_OPERATOR_ALLOW_LOOPBACK": "true", "WEBHOOK_OPERATOR_RETRY_SCHEDULE": "2s,3s,5s,10s",
               "WEBHOOK_OPERATOR_STATUS_INTERVAL": "500ms"}  # fmt: skip
        log = workdir / "operator.log"
        print(f"\n== starting the operator (log: {log})", flush=True)
        with log.open("wb") as handle:
            operator = subprocess.Popen([sys.executable, "-m", "webhook_operator.cli.main", "run"], env=env,
                                        stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
        wait_ready(health, operator, log)

        print("\n== applying the seed's example Webhooks (endpoints on the loopback receiver) and a flaky one")
        for path in sorted((ROOT / "examples").glob("*.yaml")):
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
            for doc in docs:
                if doc["kind"] == "Webhook":
                    doc["spec"]["webhookConfig"]["endpoint"] = receiver.url(doc["metadata"]["name"])
            kubectl(plane, "apply", "-n", "demo", "-f", "-", stdin=yaml.safe_dump_all(docs))
        flaky = {"apiVersion": "events.open-metadata.org/v1alpha1", "kind": "Webhook", "metadata": {"name": "flaky"},
                 "spec": {"webhookType": "Generic", "batchSize": 5,
                          "eventFilters": [{"eventType": t} for t in ("entityCreated", "entityUpdated")],
                          "webhookConfig": {"endpoint": receiver.url("flaky")}}}  # fmt: skip
        kubectl(plane, "apply", "-n", "demo", "-f", "-", stdin=json.dumps(flaky))
        time.sleep(1.5)
        kubectl(plane, "get", "webhooks", "-n", "demo", show=True)

        files = sorted(EVENTS.glob("[0-9][0-9]-*.json"))[: max(1, min(40, args.events))]
        print(f"\n== streaming {len(files)} OpenMetadata ChangeEvents into the intake", flush=True)
        for start in range(0, len(files), 10):
            chunk = [json.loads(p.read_text()) for p in files[start : start + 10]]
            print(f"  intake    POST {len(chunk)} events -> {post(intake, chunk)}", flush=True)
            time.sleep(1.0)
        kubectl(plane, "get", "webhooks", "-n", "demo", show=True)

        print("\n== waiting for the flaky endpoint to heal and the held events to flow", flush=True)
        deadline = time.monotonic() + args.fail_for + 60
        while time.monotonic() < deadline:
            status = json.loads(kubectl(plane, "get", "webhook", "flaky", "-n", "demo", "-o", "json")).get("status", {})
            if status.get("status") == "active" and status.get("counts", {}).get("pending") == 0 and \
                    status.get("counts", {}).get("delivered", 0) > 0:  # fmt: skip
                break
            time.sleep(1.0)
        else:
            raise SystemExit("the flaky webhook did not recover")
        time.sleep(1.0)
        kubectl(plane, "get", "webhooks", "-n", "demo", "-o", "wide", show=True)
        kubectl(plane, "get", "events", "-n", "demo", "--field-selector", "involvedObject.name=flaky", show=True)
        print(f"\n== done: the receiver got {receiver.count} deliveries", flush=True)
        if args.keep:
            print(f"\neverything stays up: export KUBECONFIG={kubeconfig}; intake http://127.0.0.1:{intake} "
                  f"(token {TOKEN}). Ctrl-C to stop.", flush=True)  # fmt: skip
            stop = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            while not stop.wait(1.0):
                plane.check_alive()
        return 0
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if operator is not None and operator.poll() is None:
            operator.terminate()
            operator.wait(30)
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
