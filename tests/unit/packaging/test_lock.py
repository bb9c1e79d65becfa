"""The lock files agree with pyproject.toml and with what is installed, and every pin carries hashes.

Issue 13, finding 7: floors alone let an image build pick any release above them. ``requirements/runtime.txt`` (the
image) and ``requirements/dev.txt`` (CI and ``make install``) pin every package, transitive ones included, with
hashes; ``make lock`` regenerates them. These checks catch a pyproject edit without ``make lock``, a hand edit that
drops hashes, a pin below a security floor, and a venv that drifted from the lock.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .test_dependencies import SECURITY_FLOORS

ROOT = Path(__file__).resolve().parents[3]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
LOCKS = {"runtime": ROOT / "requirements" / "runtime.txt", "dev": ROOT / "requirements" / "dev.txt"}

#: Transitive runtime dependencies with advisories: pyproject.toml does not name them, so only the lock keeps the image
#: off the vulnerable releases. package -> (the newest release that must not be locked, the advisory it carries).
TRANSITIVE_FLOORS: dict[str, tuple[str, str]] = {
    "urllib3": ("2.4.0", "CVE-2025-50181/50182: redirects not disabled for PoolManager/Pyodide, fixed in 2.5.0"),
    "h11": ("0.15.0", "CVE-2025-43859: chunked-encoding request smuggling, fixed in 0.16.0"),
    "requests": ("2.32.3", "CVE-2024-47081: .netrc credentials leak via crafted URLs, fixed in 2.32.4"),
    "idna": ("3.6", "CVE-2024-3651: quadratic-time encode() DoS, fixed in 3.7"),
    "certifi": ("2024.6.2", "CVE-2024-39689: GLOBALTRUST roots still trusted, removed in 2024.7.4"),
}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: int


def parse_lock(text: str) -> list[Pin]:
    """Entries of a ``uv pip compile --generate-hashes`` file: ``name==version [; marker] \\`` then hash lines."""
    pins: list[Pin] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = _PIN.match(line)
        if not match:
            assert not re.match(r"^[A-Za-z0-9]", line), f"unparsable lock line {index + 1}: {line!r}"
            continue
        hashes = 0
        for following in lines[index + 1 :]:
            if not following.strip().startswith("--hash=sha256:"):
                break
            hashes += 1
        marker = Marker(match.group(3)) if match.group(3) else None
        pins.append(Pin(canonicalize_name(match.group(1)), Version(match.group(2)), marker, hashes))
    return pins


def _lock(kind: str) -> list[Pin]:
    path = LOCKS[kind]
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing: run make lock", pytrace=False)
    return parse_lock(path.read_text(encoding="utf-8"))


def _declared(kind: str) -> list[Requirement]:
    lines = list(PROJECT["dependencies"])
    if kind == "dev":
        lines += PROJECT["optional-dependencies"]["dev"]
    return [Requirement(line) for line in lines]


def test_parser_reads_markers_and_hashes() -> None:
    text = (
        "a-b==1.2 ; sys_platform == 'win32' \\\n    --hash=sha256:00\n    --hash=sha256:11\n    # via x\n"
        "c==3.0 \\\n    --hash=sha256:22\n"
    )
    assert parse_lock(text) == [
        Pin("a-b", Version("1.2"), Marker("sys_platform == 'win32'"), 2),
        Pin("c", Version("3.0"), None, 1),
    ]


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_every_pin_has_hashes(kind: str) -> None:
    unhashed = [pin.name for pin in _lock(kind) if pin.hashes == 0]
    assert not unhashed, f"{LOCKS[kind].name}: pins without --hash (pip --require-hashes refuses them): {unhashed}"


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_lock_satisfies_every_declared_requirement(kind: str) -> None:
    """A requirement added or raised in pyproject.toml without ``make lock`` fails here, naming it."""
    pins: dict[str, list[Pin]] = {}
    for pin in _lock(kind):
        pins.setdefault(pin.name, []).append(pin)
    for requirement in _declared(kind):
        found = pins.get(canonicalize_name(requirement.name))
        assert found, f"{requirement} is declared in pyproject.toml but not in {LOCKS[kind].name}: run make lock"
        for pin in found:
            assert requirement.specifier.contains(pin.version, prereleases=True), (
                f"{LOCKS[kind].name} pins {pin.name}=={pin.version}, outside {requirement}: run make lock"
            )


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_lock_excludes_every_vulnerable_release(kind: str) -> None:
    for pin in _lock(kind):
        floor = SECURITY_FLOORS.get(pin.name) or TRANSITIVE_FLOORS.get(pin.name)
        if floor is not None:
            assert pin.version > Version(floor[0]), f"{LOCKS[kind].name} pins {pin.name}=={pin.version}: {floor[1]}"


@pytest.mark.parametrize("package", sorted(TRANSITIVE_FLOORS))
def test_transitive_packages_with_advisories_are_in_the_runtime_lock(package: str) -> None:
    """The floor list names real runtime dependencies: a package that left the tree is removed from the list."""
    assert package in {pin.name for pin in _lock("runtime")}, f"{package} is no longer a runtime dependency"


def test_runtime_lock_is_the_runtime_part_of_the_dev_lock() -> None:
    """The image and CI run the same runtime versions: every runtime pin appears unchanged in the dev lock."""
    dev = {(pin.name, pin.version, str(pin.marker)) for pin in _lock("dev")}
    differing = [f"{p.name}=={p.version}" for p in _lock("runtime") if (p.name, p.version, str(p.marker)) not in dev]
    assert not differing, f"runtime pins missing from or different in requirements/dev.txt: {differing}: make lock"


def test_installed_versions_are_the_locked_ones() -> None:
    """The venv the tests run in is the lock's (``make install`` installs it with --require-hashes)."""
    drift: list[str] = []
    for pin in _lock("dev"):
        if pin.marker is not None and not pin.marker.evaluate():
            continue
        try:
            installed = Version(metadata.version(pin.name))
        except metadata.PackageNotFoundError:
            drift.append(f"{pin.name} (locked {pin.version}, not installed)")
            continue
        if installed != pin.version:
            drift.append(f"{pin.name} (locked {pin.version}, installed {installed})")
    assert not drift, f"the venv differs from requirements/dev.txt: {drift}; run make install"
