"""Command line for the local control plane: ``python -m controlplane build|up|down|status|run``.

``up`` starts a detached supervisor that owns the three processes and writes the kubeconfig; ``down`` asks it to stop
(SIGTERM) and waits, so ``make cluster-up`` / ``make cluster-down`` leave nothing behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from controlplane import versions
from controlplane.build import BuildError, ensure_binaries, ensure_helm
from controlplane.cluster import ControlPlane, ControlPlaneError, log_tail

DEFAULT_DIR = Path(".cluster")


def _serve(state_dir: Path) -> int:
    """Run the control plane in the foreground until SIGTERM/SIGINT; data lives in a temp dir."""
    state_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="webhook-operator-cluster-"))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    plane = ControlPlane(workdir, kubeconfig=state_dir / "kubeconfig")
    try:
        plane.start()
        (state_dir / "workdir").write_text(str(workdir))
        (state_dir / "ready").write_text(f"{plane.server}\n")
        print(f"control plane ready in {plane.startup_seconds:.1f} s at {plane.server}", flush=True)
        while not stop.wait(1.0):
            plane.check_alive()
        return 0
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        plane.stop()
        (state_dir / "ready").unlink(missing_ok=True)
        (state_dir / "supervisor.pid").unlink(missing_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / "supervisor.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def _up(state_dir: Path, timeout: float) -> int:
    if _pid(state_dir) is not None:
        print(f"control plane already running (kubeconfig: {state_dir / 'kubeconfig'})")
        return 0
    ensure_binaries()  # build in the foreground so its progress messages are seen
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "ready").unlink(missing_ok=True)
    log = state_dir / "supervisor.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "run", "--dir", str(state_dir)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(os.environ, PYTHONPATH=str(versions.HACK_DIR)),
        )
    (state_dir / "supervisor.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (state_dir / "ready").exists():
            print(f"control plane up: {(state_dir / 'ready').read_text().strip()}")
            print(f"export KUBECONFIG={(state_dir / 'kubeconfig').resolve()}")
            return 0
        if proc.poll() is not None:
            print(f"control plane failed to start:\n{log_tail(log)}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    proc.terminate()
    print(f"control plane not ready after {timeout:.0f} s:\n{log_tail(log)}", file=sys.stderr)
    return 1


def _down(state_dir: Path) -> int:
    pid = _pid(state_dir)
    if pid is None:
        print("control plane not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("control plane stopped")
            return 0
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    print("control plane killed after 30 s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build (or find cached) etcd, kube-apiserver, kube-controller-manager")
    sub.add_parser("build-helm", help="build (or find cached) helm")
    for name in ("up", "down", "status", "run"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state dir (kubeconfig, pid, logs)")
        if name == "up":
            cmd.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if hasattr(args, "dir"):
        args.dir = args.dir.resolve()  # the components run in their own working directory
    try:
        if args.command == "build":
            print(ensure_binaries().kube_apiserver.parent)
            return 0
        if args.command == "build-helm":
            print(ensure_helm())
            return 0
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "run":
        return _serve(args.dir)
    if args.command == "up":
        try:
            return _up(args.dir, args.timeout)
        except BuildError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "down":
        return _down(args.dir)
    running = _pid(args.dir) is not None
    print("running" if running else "not running")
    return 0 if running else 1


if __name__ == "__main__":
    sys.exit(main())
