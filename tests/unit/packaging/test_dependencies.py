"""Dependency floors: pyproject.toml excludes the versions with known advisories, and what is installed satisfies it.

Issue 13, finding 7: ``jinja2>=3.1`` admitted 3.1.5, whose sandbox escape (CVE-2025-27516) printed an environment
variable through a tenant's template, and ``aiohttp>=3.12`` admitted releases without the request-smuggling fix
(CVE-2025-53643). ``SECURITY_FLOORS`` names, per runtime dependency with an advisory, the last vulnerable version
and why; docs/security.md lists the same. The lock files (``test_lock.py``) pin exact versions for the image and CI;
the floors still protect anyone who installs the package from PyPI without the lock.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

# package -> (the newest release the floor must exclude, the advisory it carries)
SECURITY_FLOORS: dict[str, tuple[str, str]] = {
    "jinja2": ("3.1.5", "CVE-2025-27516: sandbox escape through |attr and str.format, fixed in 3.1.6"),
    "aiohttp": ("3.14.2", "CVE-2025-53643 request smuggling (3.12.14) ... CVE-2026-69244 parser OOB read (3.14.3)"),
    "kubernetes": ("34.1.0", "pins urllib3<2.4, below the CVE-2025-50181/50182 fixes (urllib3 2.5)"),
    "pydantic": ("2.3.0", "CVE-2024-3772: ReDoS in email validation, fixed in 2.4.0"),
    "pyyaml": ("5.3.1", "CVE-2020-14343: arbitrary code execution in full_load, fixed in 5.4"),
    "httpx": ("0.22.0", "CVE-2021-41945: URL parsing, fixed in 0.23.0"),
}


def _requirements(*groups: str) -> list[Requirement]:
    lines: list[str] = []
    for group in groups:
        lines += PROJECT["dependencies"] if group == "runtime" else PROJECT["optional-dependencies"][group]
    return [Requirement(line) for line in lines]


RUNTIME = {canonicalize_name(r.name): r for r in _requirements("runtime")}


@pytest.mark.parametrize("package", sorted(SECURITY_FLOORS))
def test_declared_floor_excludes_the_vulnerable_release(package: str) -> None:
    vulnerable, advisory = SECURITY_FLOORS[package]
    requirement = RUNTIME[canonicalize_name(package)]
    assert not requirement.specifier.contains(vulnerable, prereleases=True), (
        f"pyproject.toml admits {package} {vulnerable} ({advisory}): raise the floor in {requirement}"
    )


def test_the_issue_13_floors_are_exact() -> None:
    assert RUNTIME["jinja2"].specifier.contains("3.1.6")
    assert not RUNTIME["aiohttp"].specifier.contains("3.12.13")
    assert not RUNTIME["aiohttp"].specifier.contains("4.0.0")  # GuardedConnector is verified for 3.x only


@pytest.mark.parametrize("requirement", _requirements("runtime", "dev"), ids=str)
def test_installed_version_satisfies_the_declared_requirement(requirement: Requirement) -> None:
    if requirement.marker is not None and not requirement.marker.evaluate():
        return
    try:
        installed = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{requirement.name} is declared in pyproject.toml but not installed (run make install)")
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"installed {requirement.name} {installed} does not satisfy {requirement}: reinstall with make install"
    )
