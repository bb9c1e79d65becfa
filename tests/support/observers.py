"""What the scale-out tests observe from outside the operator processes: a receiver that knows which replica sent
each request (``AttributingReceiver``), and every version of the Webhooks' status as a watch sees it
(``StatusWatch``). Both answer "who did what after the moment X" without asking the operator itself."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from support.cluster import Cluster


@dataclass
class Delivery:
    path: str
    body: bytes
    at: float  # time.monotonic() when it was read whole
    begun: float  # time.monotonic() when its headers had arrived
    replica: int | None  # index in the ReplicaSet; None: the sender could not be identified

    def events(self) -> list[dict[str, Any]]:
        payload = json.loads(self.body)
        return list(payload["data"]) if isinstance(payload, dict) and "data" in payload else [payload]


@dataclass
class AttributingReceiver:
    """A loopback HTTP receiver in its own thread that records, for every request, which operator process sent
    it: the peer's port is looked up in /proc/net/tcp to find the socket's inode, and the inode among the open
    files of each replica's process. That is how the fencing test tells a frozen replica's late request from its
    successor's, without the operator having to say who it is."""

    pids: dict[int, int] = field(default_factory=dict)  # replica index → pid; refresh after a restart
    delay: float = 0.0
    status_by_path: dict[str, int] = field(default_factory=dict)
    received: list[Delivery] = field(default_factory=list)
    _ports: dict[int, int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="attributing-receiver")
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self.runner, sock)
        await site.start()
        return int(sock.getsockname()[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        begun = time.monotonic()
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        replica = self._who(int(peer[1])) if peer else None
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.status_by_path.get(request.path, 200)
        if 200 <= status < 300:
            self.received.append(Delivery(request.path, body, time.monotonic(), begun, replica))
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    def _who(self, port: int) -> int | None:
        if port in self._ports and self._ports[port] is not None:
            return self._ports[port]
        inode = _client_inode(port, self.port)
        found = None
        if inode is not None:
            needle = f"socket:[{inode}]"
            for index, pid in self.pids.items():
                if _has_fd(pid, needle):
                    found = index
                    break
        self._ports[port] = found
        return found

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def by_path(self, path: str) -> list[Delivery]:
        return [d for d in list(self.received) if d.path == f"/{path}"]

    def event_ids(self, path: str) -> list[str]:
        return [str(e.get("eventId")) for d in self.by_path(path) for e in d.events()]


def _client_inode(client_port: int, server_port: int) -> int | None:
    """The inode of the loopback socket 127.0.0.1:client_port → 127.0.0.1:server_port (the sender's end)."""
    local, remote = f"0100007F:{client_port:04X}", f"0100007F:{server_port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) > 9 and parts[1] == local and parts[2] == remote:
            return int(parts[9])
    return None


def _has_fd(pid: int, target: str) -> bool:
    try:
        with os.scandir(f"/proc/{pid}/fd") as entries:
            for fd in entries:
                try:
                    if os.readlink(fd.path) == target:
                        return True
                except OSError:
                    continue
    except OSError:
        return False
    return False


@dataclass(frozen=True)
class StatusVersion:
    at: float  # time.monotonic() when the watch saw it
    name: str
    resource_version: int
    delivered: int | None
    pending: int | None
    reason: str


class StatusWatch:
    """Every version of the Webhooks of a namespace, as a ``kubectl get --watch`` sees them: a status write that
    is put right a moment later still shows here, where polling could miss it."""

    # "|" between fields: kubectl's printer turns a tab into spaces.
    TEMPLATE = (
        "{.metadata.name}|{.metadata.resourceVersion}|{.status.counts.delivered}|{.status.counts.pending}|"
        '{.status.conditions[0].reason}{"\\n"}'
    )

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.versions: list[StatusVersion] = []
        self.proc = subprocess.Popen(
            [str(cluster.kubectl_bin), f"--kubeconfig={cluster.kubeconfig}", "get", "webhooks", "-n", namespace,
             "--watch", "-o", f"jsonpath={self.TEMPLATE}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.thread = threading.Thread(target=self._read, daemon=True, name="status-watch")
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.rstrip("\n").split("|")
            if len(parts) == 5 and parts[1].isdigit():
                self.versions.append(StatusVersion(time.monotonic(), parts[0], int(parts[1]), _int(parts[2]),
                                                   _int(parts[3]), parts[4]))  # fmt: skip

    def since(self, at: float, name: str) -> list[StatusVersion]:
        return [v for v in list(self.versions) if v.at >= at and v.name == name]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.thread.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None
