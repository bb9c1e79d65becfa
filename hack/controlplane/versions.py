"""Pinned versions of everything the control plane is built from, and where builds are cached.

The cache key includes a hash of the committed go.mod/go.sum files, so changing a pin rebuilds while a second run
with the same pins is instant.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v4.3.1"

HACK_DIR = Path(__file__).resolve().parent.parent
K8S_MODULE_DIR = HACK_DIR / "k8s"
ETCD_MODULE_DIR = HACK_DIR / "etcd"


def cache_root() -> Path:
    """Outside the repository so a fresh clone (CI) reuses earlier builds on the same machine."""
    override = os.environ.get("WEBHOOK_OPERATOR_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "webhook-operator"


def _pins_digest(*dirs: Path) -> str:
    digest = hashlib.sha256()
    for directory in dirs:
        for name in ("go.mod", "go.sum"):
            path = directory / name
            if path.exists():
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def bin_dir() -> Path:
    key = f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}-{_pins_digest(K8S_MODULE_DIR, ETCD_MODULE_DIR)}"
    return cache_root() / key / "bin"


def helm_dir() -> Path:
    return cache_root() / f"helm-{HELM_VERSION}" / "bin"
