"""Run the real operator (`webhook-operator run`) as a subprocess against the test cluster, and real HTTP receivers
on loopback in a background thread, for end-to-end tests that stay synchronous (kubectl is a subprocess too)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from controlplane.cluster import free_port
from support.cluster import Cluster, wait_for
from support.receiver import Receiver

TOKEN = "e2e-intake-token-0123456789"


class OperatorProcess:
    """One operator process; restartable on the same store file (SIGKILL included)."""

    def __init__(self, cluster: Cluster, workdir: Path, namespaces: list[str], **settings: str) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.namespaces = namespaces
        self.settings = settings
        self.intake_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "operator.log"
        (workdir / "tokens").write_text(TOKEN + "\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.intake_port}"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "WEBHOOK_OPERATOR_NAMESPACES": ",".join(self.namespaces),
            "WEBHOOK_OPERATOR_STORE_PATH": str(self.workdir / "store.db"),
            "WEBHOOK_OPERATOR_INTAKE_ADDRESS": f"127.0.0.1:{self.intake_port}",
            "WEBHOOK_OPERATOR_HEALTH_ADDRESS": f"127.0.0.1:{self.health_port}",
            "WEBHOOK_OPERATOR_INTAKE_TOKEN_FILE": str(self.workdir / "tokens"),
            "WEBHOOK_OPERATOR_ALLOW_LOOPBACK": "true",
            "WEBHOOK_OPERATOR_RETRY_SCHEDULE": "300ms,300ms,300ms",
            "WEBHOOK_OPERATOR_STATUS_INTERVAL": "300ms",
            "WEBHOOK_OPERATOR_LOG_LEVEL": "INFO",
        }
        env.update({f"WEBHOOK_OPERATOR_{k.upper()}": v for k, v in self.settings.items()})
        return env

    def start(self, timeout: float = 60, *, until: str = "delivery") -> OperatorProcess:
        """Start the process and wait until ``until`` is ready: ``delivery`` (every existing Webhook registered,
        what most tests need), ``intake`` (events are accepted; the API server may still be away) or ``nothing``."""
        ready = {"delivery": self.ready, "intake": self.intake_ready, "nothing": lambda: True}[until]
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webhook_operator.cli.main", "run"], env=self.env(), stdout=handle,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        handle.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited ({self.proc.returncode}):\n{self.tail()}")
            if ready():
                return self
            time.sleep(0.1)
        raise AssertionError(f"operator not ready after {timeout} s:\n{self.tail()}")

    def ready(self) -> bool:
        """Delivery ready: every existing Webhook is registered (``/readyz`` says ``"delivery": "ready"``)."""
        return self.readiness().get("delivery") == "ready"

    def intake_ready(self) -> bool:
        """The intake accepts events (``/readyz`` answers 200), whether or not the Webhook list is known yet."""
        return self.readiness().get("intake") == "ready"

    def readiness(self) -> dict[str, Any]:
        """The ``/readyz`` body (``{}`` while nothing answers)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=1) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read() or b"{}"))
        except (urllib.error.URLError, OSError, ValueError):
            return {}

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def post(self, payload: Any, *, token: str | None = TOKEN, content_type: str = "application/json",
             raw: bytes | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
        data = raw if raw is not None else json.dumps(payload).encode()
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"{self.url}/api/v1/events", data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/metrics", timeout=5) as resp:
            return resp.read().decode()


class ThreadedReceiver:
    """A `support.receiver.Receiver` served from its own thread and event loop."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.receiver = Receiver(**kwargs)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(10)

    def url(self, path: str = "hook") -> str:
        return self.receiver.url.rsplit("/", 1)[0] + "/" + path

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def by_path(self, path: str) -> list[Any]:
        return [r for r in list(self.receiver.received) if r.path == f"/{path}"]

    def events(self, path: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in self.by_path(path):
            payload = item.json()
            out.extend(payload["data"] if isinstance(payload, dict) and "data" in payload else [payload])
        return out


@contextmanager
def receiver(**kwargs: Any) -> Iterator[ThreadedReceiver]:
    r = ThreadedReceiver(**kwargs)
    try:
        yield r
    finally:
        r.close()


def webhook_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = cluster.get_json("webhook", name, "-n", namespace).get("status") or {}
    return status


def wait_status(cluster: Cluster, namespace: str, name: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def check() -> bool:
        nonlocal last
        last = webhook_status(cluster, namespace, name)
        return bool(predicate(last))

    try:
        wait_for(check, timeout, f"status of {namespace}/{name}", interval=0.3)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {json.dumps(last)}") from None
    return last
