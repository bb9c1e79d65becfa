"""`make demo`: the main job on the embedded default.

Starts the local control plane, installs the Webhook CRD, applies the seed's example Webhooks and shows them with
`kubectl get webhooks`. With --keep it stays up until Ctrl-C (kubeconfig in .cluster/demo-kubeconfig).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from controlplane.cluster import ControlPlane, ControlPlaneError

ROOT = Path(__file__).resolve().parent.parent


def _kubectl(plane: ControlPlane, *args: str) -> str:
    result = subprocess.run(
        [str(plane.binaries.kubectl), f"--kubeconfig={plane.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def _show(plane: ControlPlane, *args: str) -> None:
    print(f"\n$ kubectl {' '.join(args)}", flush=True)
    print(_kubectl(plane, *args), end="", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the control plane running until Ctrl-C")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="webhook-operator-demo-"))
    kubeconfig = ROOT / ".cluster" / "demo-kubeconfig"
    plane = ControlPlane(workdir, kubeconfig=kubeconfig)
    try:
        print("starting the local control plane (etcd, kube-apiserver, kube-controller-manager)...", flush=True)
        plane.start()
        print(f"ready in {plane.startup_seconds:.1f} s at {plane.server}", flush=True)
        _show(plane, "version")
        _show(plane, "get", "--raw", "/readyz")
        print()
        _show(plane, "apply", "--server-side", "-f", str(ROOT / "crds" / "webhooks.yaml"))
        _kubectl(plane, "wait", "--for=condition=Established", "crd/webhooks.events.open-metadata.org")
        _show(plane, "api-resources", "--api-group=events.open-metadata.org")
        _show(plane, "create", "namespace", "demo")
        for example in sorted((ROOT / "examples").glob("*.yaml")):
            _show(plane, "apply", "-n", "demo", "-f", str(example))
        _show(plane, "get", "webhooks", "-n", "demo")
        _show(plane, "get", "webhooks", "-n", "demo", "-o", "wide")
        if args.keep:
            print(f"\ncontrol plane stays up: export KUBECONFIG={kubeconfig}   (Ctrl-C to stop)", flush=True)
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
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
