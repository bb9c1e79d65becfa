"""Start and stop etcd, kube-apiserver and kube-controller-manager on loopback.

Every process gets free ports, a data directory under one work directory, its own log file, and PR_SET_PDEATHSIG so
that it dies with the Python process that started it, even when that process is killed with SIGKILL: a crashed
test run leaves no orphans holding ports. A process that exits during start-up is reported with the tail of its log.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controlplane import pki as pki_mod
from controlplane.build import Binaries, ensure_binaries


class ControlPlaneError(RuntimeError):
    """The control plane could not start or died; the message names the component and shows its log tail."""


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, component: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ControlPlaneError(f"{component}: port 127.0.0.1:{port} is already in use ({exc.strerror})") from exc


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


@dataclass
class Ports:
    etcd_client: int = field(default_factory=free_port)
    etcd_peer: int = field(default_factory=free_port)
    apiserver: int = field(default_factory=free_port)
    controller_manager: int = field(default_factory=free_port)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class ControlPlane:
    """One local control plane. Use as a context manager, or call start()/stop()."""

    def __init__(
        self,
        workdir: Path,
        *,
        binaries: Binaries | None = None,
        ports: Ports | None = None,
        kubeconfig: Path | None = None,
    ) -> None:
        self.workdir = workdir.resolve()
        self.binaries = binaries or ensure_binaries()
        self.ports = ports or Ports()
        self.kubeconfig = (kubeconfig or self.workdir / "kubeconfig").resolve()
        self.logs = workdir / "logs"
        self._procs: list[_Proc] = []
        self.pki: pki_mod.Pki | None = None
        self.startup_seconds: float = 0.0

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        started = time.monotonic()
        for component, port in (
            ("etcd", self.ports.etcd_client),
            ("etcd peer", self.ports.etcd_peer),
            ("kube-apiserver", self.ports.apiserver),
            ("kube-controller-manager", self.ports.controller_manager),
        ):
            check_port_free(port, component)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pki = pki_mod.generate(self.workdir / "pki")
        try:
            self._start_etcd(timeout)
            self._start_apiserver(timeout)
            self.write_kubeconfig(self.kubeconfig)
            self._start_controller_manager(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self, grace: float = 10.0) -> None:
        for proc in reversed(self._procs):
            if proc.popen.poll() is None:
                proc.popen.terminate()
        deadline = time.monotonic() + grace
        for proc in reversed(self._procs):
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        self._procs.clear()

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop_apiserver(self) -> None:
        """Stop only kube-apiserver (etcd and the controller-manager stay), to test clients through an outage."""
        self._stop_component("kube-apiserver")

    def _stop_component(self, name: str) -> None:
        for proc in [p for p in self._procs if p.name == name]:
            proc.popen.terminate()
            try:
                proc.popen.wait(15)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
            self._procs.remove(proc)

    def start_apiserver(self, timeout: float = 90.0) -> None:
        """Start kube-apiserver again on the same port with the same keys (clients keep their kubeconfig), then
        restart kube-controller-manager: its informers back off for ~40 s after an outage, which would slow every
        test that follows (default ServiceAccounts, namespace deletion)."""
        self._start_apiserver(timeout)
        self._stop_component("kube-controller-manager")
        self._start_controller_manager(timeout)

    def check_alive(self) -> None:
        """Raise with the log tail of any component that has exited."""
        for proc in self._procs:
            code = proc.popen.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited with code {code}; last lines of {proc.log}:\n{log_tail(proc.log)}"
                )

    # -- components ------------------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: Sequence[str]) -> _Proc:
        log = self.logs / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(
            list(argv),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            cwd=self.workdir,
        )
        handle.close()
        proc = _Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def _wait(self, proc: _Proc, probe: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError, urllib.error.URLError, ssl.SSLError, ValueError):
                if probe():
                    return
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{proc.name} not ready after {timeout:.0f} s; last lines of {proc.log}:\n{log_tail(proc.log)}"
        )

    def _start_etcd(self, timeout: float) -> None:
        client = f"http://127.0.0.1:{self.ports.etcd_client}"
        peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
        proc = self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--listen-metrics-urls=",
                # Throw-away test data: skipping fsync makes CRD and namespace churn several times faster.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client}/health", timeout=2) as resp:  # noqa: S310 - loopback http
                return bool(json.loads(resp.read()).get("health") == "true")

        self._wait(proc, healthy, timeout)

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        return ssl.create_default_context(cafile=str(self.pki.ca_cert))

    def _start_apiserver(self, timeout: float) -> None:
        assert self.pki is not None
        p = self.pki
        proc = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={p.serving_cert}",
                f"--tls-private-key-file={p.serving_key}",
                f"--client-ca-file={p.ca_cert}",
                f"--secure-port={self.ports.apiserver}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--token-auth-file={p.token_file}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p.sa_pub}",
                f"--service-account-signing-key-file={p.sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--v=1",
            ],
        )
        ctx = self._ssl_context()

        def ready() -> bool:
            request = urllib.request.Request(  # noqa: S310 - https to loopback
                f"{self.server}/readyz", headers={"Authorization": f"Bearer {p.admin_token}"}
            )
            with urllib.request.urlopen(request, timeout=2, context=ctx) as resp:  # noqa: S310
                return bool(resp.status == 200)

        self._wait(proc, ready, timeout)

    def _start_controller_manager(self, timeout: float) -> None:
        assert self.pki is not None
        p = self.pki
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--authentication-skip-lookup=true",
                f"--service-account-private-key-file={p.sa_key}",
                f"--root-ca-file={p.ca_cert}",
                f"--cluster-signing-cert-file={p.ca_cert}",
                f"--cluster-signing-key-file={p.ca_key}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports.controller_manager}",
                "--controllers=*",
                "--v=1",
            ],
        )
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # its serving cert is self-signed by kube-controller-manager itself

        def healthy() -> bool:
            url = f"https://127.0.0.1:{self.ports.controller_manager}/healthz"
            with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
                return bool(resp.status == 200)

        self._wait(proc, healthy, timeout)

    # -- client config ---------------------------------------------------------------------------------------

    def write_kubeconfig(self, path: Path) -> None:
        import base64

        import yaml

        assert self.pki is not None
        ca = base64.b64encode(self.pki.ca_cert.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "webhook-operator-local",
            "clusters": [
                {
                    "name": "webhook-operator-local",
                    "cluster": {"server": self.server, "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.pki.admin_token}}],
            "contexts": [
                {
                    "name": "webhook-operator-local",
                    "context": {"cluster": "webhook-operator-local", "user": "admin"},
                }
            ],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
