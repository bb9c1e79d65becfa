"""Session plumbing: the real control plane (or an explicitly chosen cluster), per-test namespaces, markers,
a loopback-only network tripwire, and a rule that no test may skip.

Integration tests never run against whatever KUBECONFIG happens to point to: the project's own control plane is
started unless ``--existing-cluster`` (or WEBHOOK_OPERATOR_TEST_EXISTING_CLUSTER=1) says to use KUBECONFIG's cluster.
When the control plane or a tool cannot start, the session fails with the reason instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cluster import Cluster
from support.loopback import loopback_only

_SKIPPED: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--existing-cluster",
        action="store_true",
        default=False,
        help="run integration tests against the cluster named by KUBECONFIG instead of the local control plane",
    )
    parser.addoption(
        "--allow-skips",
        action="store_true",
        default=False,
        help="do not fail the session when a test skips (never in CI)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        parts = Path(str(item.fspath)).relative_to(root).parts
        if parts and parts[0] == "unit":
            item.add_marker(pytest.mark.unit)
        elif parts and parts[0] in {"integration", "e2e"}:
            item.add_marker(pytest.mark.integration)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SKIPPED and not session.config.getoption("--allow-skips"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SKIPPED and not terminalreporter.config.getoption("--allow-skips"):
        terminalreporter.write_line(
            f"FAILED: {len(_SKIPPED)} test(s) skipped; no test may skip (use --allow-skips locally): "
            + ", ".join(_SKIPPED[:10]),
            red=True,
        )


def _use_existing(config: pytest.Config) -> bool:
    return bool(config.getoption("--existing-cluster")) or os.environ.get(
        "WEBHOOK_OPERATOR_TEST_EXISTING_CLUSTER", ""
    ).lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    from controlplane.build import BuildError, kubectl_path

    try:
        kubectl = kubectl_path()
    except BuildError as exc:
        pytest.fail(f"kubectl unavailable: {exc}", pytrace=False)
    if _use_existing(request.config):
        kubeconfig = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
        if not Path(kubeconfig).exists():
            pytest.fail(f"--existing-cluster given but kubeconfig {kubeconfig} does not exist", pytrace=False)
        yield Cluster(Path(kubeconfig), kubectl, local=False)
        return

    from controlplane.build import ensure_binaries
    from controlplane.cluster import ControlPlane, ControlPlaneError

    workdir = Path(tempfile.mkdtemp(prefix="wo-test-cluster-"))
    try:
        plane = ControlPlane(workdir, binaries=ensure_binaries())
        plane.start()
    except (BuildError, ControlPlaneError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"the local control plane could not start: {exc}", pytrace=False)
    try:
        yield Cluster(plane.kubeconfig, kubectl, local=True, plane=plane)
        plane.check_alive()
    finally:
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def _namespace_janitor(cluster: Cluster) -> Iterator[list[str]]:
    """Test namespaces are deleted without blocking each test (namespace deletion takes seconds); at the end of
    the session every one of them must really be gone, or the session fails."""
    deleted: list[str] = []
    yield deleted
    for name in deleted:
        cluster.delete_namespace(name, timeout=180)


def _namespace(cluster: Cluster, janitor: list[str]) -> Iterator[str]:
    name = cluster.create_namespace()
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
    janitor.append(name)


@pytest.fixture
def namespace(cluster: Cluster, _namespace_janitor: list[str]) -> Iterator[str]:
    yield from _namespace(cluster, _namespace_janitor)


@pytest.fixture(scope="module")
def module_namespace(cluster: Cluster, _namespace_janitor: list[str]) -> Iterator[str]:
    yield from _namespace(cluster, _namespace_janitor)


@pytest.fixture(autouse=True)
def _loopback_tripwire(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test runs with connections outside loopback refused, except the Kubernetes API of a cluster the
    user explicitly chose with --existing-cluster (which may live anywhere)."""
    if _use_existing(request.config) and "cluster" in request.fixturenames:
        yield
        return
    with loopback_only():
        yield


@pytest.fixture(scope="session", autouse=True)
def _postgres_server() -> Iterator[None]:
    """The session's PostgreSQL (``support.postgres``) starts on first use; this stops it when the session ends."""
    yield
    from support import postgres

    postgres.stop()


@pytest.fixture(scope="session")
def openmetadata_change_event(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """OpenMetadata's own generated ``ChangeEvent`` model (extra keys forbidden), from the pinned wheel; the suite
    fails naming ``make install`` when the wheel is missing (``support.openmetadata_models``)."""
    from support.openmetadata_models import ModelsUnavailable, load_change_event_model

    try:
        return load_change_event_model(tmp_path_factory.mktemp("openmetadata-models"))
    except ModelsUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
