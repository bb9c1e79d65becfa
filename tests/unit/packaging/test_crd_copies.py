"""The Helm chart and the kustomize base each carry a copy of the generated CRD; a copy that drifts fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "crds" / "webhooks.yaml"
COPIES = [
    ROOT / "charts" / "webhook-operator" / "crds" / "webhooks.yaml",
    ROOT / "manifests" / "base" / "crds" / "webhooks.yaml",
]


@pytest.mark.parametrize("copy", COPIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_crd_copy_is_identical_to_the_generated_crd(copy: Path) -> None:
    assert copy.exists(), f"{copy.relative_to(ROOT)} is missing: cp crds/webhooks.yaml {copy.relative_to(ROOT)}"
    assert copy.read_bytes() == SOURCE.read_bytes(), (
        f"{copy.relative_to(ROOT)} differs from crds/webhooks.yaml (regenerated with `make crds`?): "
        f"cp crds/webhooks.yaml {copy.relative_to(ROOT)}"
    )
